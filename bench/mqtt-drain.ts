/**
 * MQTT drain: a backlog of ~200-byte JSON messages queued in a persistent session at a Mosquitto
 * of the benchmark's own (test/mosquitto/test.conf: max_queued_messages 100000,
 * max_inflight_messages 1000; persistence off, so the backlog lives in the broker's memory),
 * drained by
 *   bare          a bare mqtt.js client that JSON-parses each message and acks it (mqtt.js's
 *                 default handleMessage: PUBACK right after the message event): the baseline;
 *   gateway       a gateway (MQTT trigger, router, worker host, a function in an isolate that scans
 *                 each batch; every PUBACK waits for the function's success) that has warmed up
 *                 on 20,000 synthetic events before its trigger connects;
 *   gateway-cold  the same without the warm-up: the drain includes the cold start.
 * Each round runs them in turn (alternating). Each measures messages/s from the first message
 * received to the last one acknowledged, and checks afterwards that the session is empty.
 *
 *   node --no-node-snapshot --import tsx bench/mqtt-drain.ts [messages=50000] [rounds=3] [bare,gateway,gateway-cold]
 *
 * SLUICE_BENCH_TRACE=1 prints the gateway's progress every 100 ms; SLUICE_BENCH_PROFILE=<dir>
 * writes a CPU profile of this process for each gateway drain.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, connectAsync, type MqttClient } from 'mqtt'
import { mqttConnector } from '../connectors/mqtt/index.js'
import type { MqttConnectionOptions, MqttTriggerOptions } from '../connectors/mqtt/index.js'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'
import type { ConnectorDefinition, Outcome } from '../src/sdk/index.js'
import { startMosquitto, type Mosquitto } from '../test/connectors/mqtt/broker.js'
import { fmt, TELEMETRY_FN } from './common.js'
import { ceilingRate, cpuOf, machineCpu, selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const TOTAL = Number(process.argv[2] ?? 50_000)
const ROUNDS = Number(process.argv[3] ?? 3)
type Kind = 'bare' | 'gateway' | 'gateway-cold'
/** Which consumers run, in this order each round (e.g. one alone for profiling). */
const KINDS = (process.argv[4] ?? 'bare,gateway,gateway-cold').split(',') as Kind[]
const LABELS: Record<Kind, string> = {
  bare: 'bare mqtt.js (JSON.parse + PUBACK)',
  gateway: 'sluice gateway, warm (isolate, PUBACK after success)',
  'gateway-cold': 'sluice gateway, cold start included',
}
const TOPIC = 'bench/stations/+/telemetry'
const SESSION = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 }

const FN = TELEMETRY_FN

function message(i: number): { topic: string; payload: string } {
  const station = `st-${String(i % 200).padStart(3, '0')}`
  const body = {
    station,
    scooter: `sc-${String(i % 5000).padStart(5, '0')}`,
    battery: i % 100,
    speed: (i % 25) + 0.5,
    lat: 52.370216,
    lon: 4.895168,
    ts: '2026-11-27T10:00:00.000Z',
    seq: i,
    pad: '',
  }
  const base = JSON.stringify(body).length
  body.pad = 'x'.repeat(Math.max(0, 200 - base))
  return { topic: `bench/stations/${station}/telemetry`, payload: JSON.stringify(body) }
}

/** Worker-host processes of this process (children running src/sandbox/host). */
function hostPids(): number[] {
  const pids: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]?.split(' ')[1])
      if (ppid === process.pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('sandbox/host')) pids.push(Number(d))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

interface Drain {
  rate: number
  /** CPU µs per message: this process, and worker hosts. */
  cpu: number
  hostCpu: number
  /** The whole machine's CPU µs per message, Mosquitto included (cpu.ts machineCpu). */
  machine: number
}

/** Creates the persistent session (subscribed) and queues TOTAL messages in it. */
async function fill(broker: Mosquitto, clientId: string): Promise<void> {
  const session = await connectAsync(broker.url, { ...SESSION, clientId })
  await session.subscribeAsync(TOPIC, { qos: 1 })
  await session.endAsync()
  const pub = await connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `${clientId}-pub` })
  const WINDOW = 1000
  for (let i = 0; i < TOTAL; i += WINDOW) {
    const batch = []
    for (let j = i; j < Math.min(TOTAL, i + WINDOW); j++) {
      const m = message(j)
      batch.push(pub.publishAsync(m.topic, m.payload, { qos: 1 }))
    }
    await Promise.all(batch)
  }
  await pub.endAsync()
}

/** Messages still queued for `clientId` (should be 0), then removes the session. */
async function leftover(broker: Mosquitto, clientId: string): Promise<number> {
  const c: MqttClient = await connectAsync(broker.url, { ...SESSION, clientId })
  let n = 0
  c.on('message', () => n++)
  await new Promise((r) => setTimeout(r, 500))
  await c.endAsync()
  const drop = await connectAsync(broker.url, { protocolVersion: 5, clean: true, clientId, reconnectPeriod: 0 })
  await drop.endAsync()
  return n
}

async function bare(broker: Mosquitto, clientId: string): Promise<Drain> {
  let n = 0
  let t0 = 0
  let t1 = 0
  let c0 = 0
  let c1 = 0
  let m0 = 0
  let m1 = 0
  let done!: () => void
  const finished = new Promise<void>((r) => (done = r))
  const client = connect(broker.url, { ...SESSION, clientId, manualConnect: true })
  client.on('message', (_topic, payload) => {
    if (n === 0) {
      t0 = performance.now()
      c0 = selfCpu()
      m0 = machineCpu()
    }
    JSON.parse(payload.toString())
    if (++n === TOTAL) {
      // mqtt.js writes this message's PUBACK right after the event; measure after it.
      setImmediate(() => {
        t1 = performance.now()
        c1 = selfCpu()
        m1 = machineCpu()
        done()
      })
    }
  })
  client.connect()
  await finished
  await client.endAsync()
  return { rate: TOTAL / ((t1 - t0) / 1000), cpu: (c1 - c0) / TOTAL, hostCpu: 0, machine: (m1 - m0) / TOTAL }
}

/** Events shaped like the trigger's, to warm the router, worker host and isolate before the drain. */
function warmEvents(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => {
    const m = message(from + i)
    return {
      id: `warm-${from + i}`,
      source: `mqtt://devices/${m.topic}`,
      key: m.topic,
      time: new Date().toISOString(),
      body: undefined,
      rawBody: m.payload,
      meta: { topic: m.topic, qos: 1, retain: false, dup: false, packetId: 1 },
    }
  })
}

/**
 * Drains the session with a gateway. `warm`: before the trigger connects, 20,000 synthetic events
 * run through the function (instances up, code compiled and optimized), as in a gateway that has
 * been running; otherwise the drain includes the worker host's and the isolates' cold start.
 */
async function gateway(broker: Mosquitto, clientId: string, warm: boolean): Promise<Drain> {
  let n = 0
  let delivered = 0
  let t0 = 0
  let t1 = 0
  let c0 = 0
  let c1 = 0
  let h0 = 0
  let h1 = 0
  let m0 = 0
  let m1 = 0
  let hosts: number[] = []
  const hostCpu = () => cpuOf(hosts)
  let done!: () => void
  const finished = new Promise<void>((r) => (done = r))
  // The MQTT connector as built, with deliver timed: first event in, last outcome out.
  const timed: ConnectorDefinition<MqttTriggerOptions, MqttConnectionOptions> = {
    ...mqttConnector,
    createTrigger: (spec) => {
      const c = mqttConnector.createTrigger(spec)
      return {
        start: async (ctx) => {
          if (warm) for (let i = 0; i < 4; i++) await ctx.deliver(warmEvents(i * 5000, 5000))
          hosts = hostPids()
          await c.start({
            ...ctx,
            deliver: (events) => {
              if (t0 === 0) {
                t0 = performance.now()
                c0 = selfCpu()
                h0 = hostCpu()
                m0 = machineCpu()
                // The profile covers the drain only (not the start and the warm-up).
                if (inspector) void inspector.post('Profiler.start')
              }
              delivered += events.length
              return ctx.deliver(events).then((o: Outcome[]) => {
                n += events.length
                if (n >= TOTAL)
                  setImmediate(() => {
                    t1 = performance.now()
                    c1 = selfCpu()
                    h1 = hostCpu()
                    m1 = machineCpu()
                    done()
                  })
                return o
              })
            },
          })
        },
        stop: (o) => c.stop(o),
      }
    },
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-mqtt-'))
  writeFileSync(join(dir, 'fn.js'), FN)
  const yaml = `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1 }\nstore: { path: ':memory:' }\nconnections:\n  devices: { kind: mqtt, url: "${broker.url}" }\nfunctions:\n  telemetry:\n    code: fn.js\n    trigger: { mqtt: { connection: devices, topic: "${TOPIC}", clientId: ${clientId}, sessionExpiryInterval: 3600 } }\n    batch: { maxSize: 100, maxWaitMs: 5 }\n    scale: { min: 2, max: 4 }\n`
  const defs = CONNECTORS.map((d) => (d.kind === 'mqtt' ? (timed as ConnectorDefinition) : d))
  const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: defs, root: dir, env: {} })
  // SLUICE_BENCH_PROFILE=<dir>: a CPU profile of this process while the gateway drains.
  const profileDir = process.env.SLUICE_BENCH_PROFILE
  const inspector = profileDir ? new Session() : undefined
  if (inspector) {
    inspector.connect()
    await inspector.post('Profiler.enable')
  }
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, connectors: defs, logger: createLogger('warn', process.stderr as never) })
  const trace = process.env.SLUICE_BENCH_TRACE
    ? setInterval(() => {
        const f = gw.function('telemetry')
        const r = gw.router.stats('telemetry')
        process.stderr.write(
          `t=${fmt(performance.now() - t0, 0)} in=${delivered} done=${n} backlog=${f?.backlog} inflight=${f?.inflight} ready=${r.ready} inst=${f?.instances.total}/${f?.instances.busy} inv=${f?.counts.invocations}\n`,
        )
      }, 100)
    : undefined
  await finished
  clearInterval(trace)
  if (inspector && profileDir) {
    const { profile } = await inspector.post('Profiler.stop')
    writeFileSync(join(profileDir, `drain-${clientId}.cpuprofile`), JSON.stringify(profile))
    inspector.disconnect()
  }
  const info = gw.function('telemetry')
  await gw.stop()
  rmSync(dir, { recursive: true, force: true })
  if (info && info.counts.eventsDone < TOTAL) throw new Error(`only ${info.counts.eventsDone} of ${TOTAL} done`)
  return { rate: TOTAL / ((t1 - t0) / 1000), cpu: (c1 - c0) / TOTAL, hostCpu: (h1 - h0) / TOTAL, machine: (m1 - m0) / TOTAL }
}

async function main(): Promise<void> {
  const broker = await startMosquitto({ persistence: false })
  // Interrupted: exit, so the broker helper's exit hook stops this benchmark's Mosquitto.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130))
  const results: Record<Kind, Drain[]> = { bare: [], gateway: [], 'gateway-cold': [] }
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const kind of KINDS) {
        const clientId = `bench-${kind}-${r}-${process.pid}`
        await fill(broker, clientId)
        const d = kind === 'bare' ? await bare(broker, clientId) : await gateway(broker, clientId, kind === 'gateway')
        const left = await leftover(broker, clientId)
        if (left !== 0) throw new Error(`${kind} round ${r + 1} left ${left} messages unacked`)
        results[kind].push(d)
        process.stderr.write(
          `round ${r + 1} ${kind}: ${fmt(d.rate, 0)} msg/s, CPU ${fmt(d.cpu, 1)} + ${fmt(d.hostCpu, 1)} us/msg, machine ${fmt(d.machine, 1)}\n`,
        )
      }
    }
  } finally {
    await broker.close()
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  const base = mean(results.bare.map((d) => d.rate))
  console.log(`\nMQTT drain: ${TOTAL} messages of ~200 bytes, ${ROUNDS} alternating rounds, mosquitto max_inflight_messages 1000, persistence off\n`)
  console.log('| consumer | msg/s per round | mean msg/s | ratio | CPU us/msg: this process + worker host | machine CPU us/msg | cores busy | ceiling |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  const machine = (ds: Drain[]) => mean(ds.map((d) => d.machine))
  for (const kind of KINDS) {
    const ds = results[kind]
    const m = mean(ds.map((d) => d.rate))
    const mc = machine(ds)
    console.log(
      `| ${LABELS[kind]} | ${ds.map((d) => fmt(d.rate, 0)).join(', ')} | ${fmt(m, 0)} | ${fmt(m / base)}x | ${fmt(mean(ds.map((d) => d.cpu)), 1)} + ${fmt(mean(ds.map((d) => d.hostCpu)), 1)} | ${fmt(mc, 1)} | ${fmt((mc * m) / 1e6)} | ${fmt(ceilingRate(mc) / base)}x |`,
    )
    if (kind !== 'bare' && results.bare.length > 0) {
      recordSummary({
        source: kind === 'gateway' ? 'MQTT drain (warm)' : 'MQTT drain (cold start included)',
        ratio: m / base,
        baseline: 'bare mqtt.js',
        cpuGateway: mean(ds.map((d) => d.cpu)),
        cpuHosts: mean(ds.map((d) => d.hostCpu)),
        cpuBaseline: mean(results.bare.map((d) => d.cpu)),
        machine: machine(ds),
        machineBaseline: machine(results.bare),
        ceiling: ceilingRate(machine(ds)) / base,
      })
    }
  }
}

await main()
