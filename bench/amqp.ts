/**
 * AMQP drain: a RabbitMQ queue pre-filled with small JSON messages, drained by
 *   (a) a bare amqplib consumer: prefetch 256, JSON.parse of each body, multiple-acks once per tick;
 *   (b) the gateway with default workers: the AMQP trigger (prefetch 256) feeding a
 *       telemetry-style function in an isolate, batches of 100 (maxWaitMs 5), the default order
 *       key (the queue: one batch at a time), acks after each outcome is durable.
 * Rounds alternate a, b, a, b... on fresh queues; each drain is timed from the consumer's
 * subscription (consume-ok) to the moment every message is processed and acknowledged.
 *
 *   node --no-node-snapshot --import tsx bench/amqp.ts [messages] [rounds]
 *   SLUICE_BENCH_AMQP_URL=amqp://guest:guest@127.0.0.1:5672 (default)
 *   SLUICE_BENCH_PROFILE=<dir> writes a CPU profile of this process for each gateway drain.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect, type ChannelModel, type Message } from 'amqplib'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'
import { fmt, median, TELEMETRY_FN } from './common.js'
import { ceilingRate, cpuOf, machineCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const TOTAL = Number(process.argv[2] ?? 50_000)
const ROUNDS = Number(process.argv[3] ?? 3)
const URL = process.env.SLUICE_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const PREFETCH = 256

const FN = TELEMETRY_FN

/** About 200 bytes of JSON, like a station's telemetry message. */
function body(k: number): Buffer {
  const station = `st-${String(k % 200).padStart(3, '0')}`
  return Buffer.from(
    JSON.stringify({
      station,
      scooter: `sc-${String(k % 5000).padStart(5, '0')}`,
      seq: k,
      battery: k % 100,
      speed: (k % 25) + 0.5,
      lat: 52.3676,
      lon: 4.9041,
      firmware: '2.14.7',
      ts: '2026-11-27T10:00:00.000Z',
      status: 'parked',
      odometerKm: 1234.5,
    }),
  )
}

async function prefill(model: ChannelModel, queue: string): Promise<number> {
  const ch = await model.createConfirmChannel()
  await ch.assertQueue(queue, { durable: true })
  let bytes = 0
  for (let i = 0; i < TOTAL; i++) {
    const b = body(i)
    bytes += b.length
    if (!ch.sendToQueue(queue, b, { persistent: true, contentType: 'application/json' })) await new Promise((r) => ch.once('drain', r))
    if (i % 2000 === 1999) await ch.waitForConfirms()
  }
  await ch.waitForConfirms()
  const { messageCount } = await ch.checkQueue(queue)
  if (messageCount !== TOTAL) throw new Error(`prefill: ${messageCount} messages in ${queue}, expected ${TOTAL}`)
  await ch.close()
  return bytes / TOTAL
}

async function bare(model: ChannelModel, queue: string): Promise<Drain> {
  const ch = await model.createChannel()
  await ch.prefetch(PREFETCH)
  let n = 0
  let last: Message | undefined
  let queued = false
  let t0 = 0
  let cpu0 = process.cpuUsage()
  let m0 = 0
  const done = new Promise<number>((resolve) => {
    const flush = () => {
      queued = false
      if (last) ch.ack(last, true)
      if (n === TOTAL) resolve(performance.now())
    }
    void ch
      .consume(queue, (msg) => {
        if (!msg) return
        JSON.parse(msg.content.toString('utf8'))
        n++
        last = msg
        if (!queued) {
          queued = true
          setImmediate(flush)
        }
      })
      .then(() => {
        t0 = performance.now()
        cpu0 = process.cpuUsage()
        m0 = machineCpu()
      })
  })
  const t1 = await done
  const cpu = process.cpuUsage(cpu0)
  const machine = (machineCpu() - m0) / TOTAL
  await ch.close()
  return { rate: TOTAL / ((t1 - t0) / 1000), cpuUs: (cpu.user + cpu.system) / TOTAL, machine }
}

/** Records when the trigger subscribed (its 'amqp consumer started' line) and drops the rest. */
class StartStamp extends Writable {
  at = 0
  cpu = process.cpuUsage()
  machine = 0
  constructor(private readonly inspector?: Session) {
    super()
  }
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    if (process.env.SLUICE_BENCH_TRACE && chunk.includes('amqp consumer stopped')) process.stderr.write(chunk)
    if (this.at === 0 && chunk.includes('amqp consumer started')) {
      this.at = performance.now()
      this.cpu = process.cpuUsage()
      this.machine = machineCpu()
      // The profile covers the drain only (not the start).
      if (this.inspector) void this.inspector.post('Profiler.start')
    }
    cb()
  }
}

async function gateway(queue: string, dir: string): Promise<Drain> {
  const yaml = `http: { port: 0, host: 127.0.0.1 }
store: { path: ${join(dir, `state-${queue}.db`)} }
log: { level: info }
connections:
  queue: { kind: amqp, url: "${URL}" }
functions:
  telemetry:
    code: fn.js
    trigger: { amqp: { connection: queue, queue: ${queue}, prefetch: ${PREFETCH} } }
    batch: { maxSize: 100, maxWaitMs: 5 }
    scale: { min: 1, max: 4 }
`
  const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
  // SLUICE_BENCH_PROFILE=<dir>: a CPU profile of this process while the gateway drains.
  const profileDir = process.env.SLUICE_BENCH_PROFILE
  const inspector = profileDir ? new Session() : undefined
  if (inspector) {
    inspector.connect()
    await inspector.post('Profiler.enable')
  }
  const stamp = new StartStamp(inspector)
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('info', stamp) })
  const hostPids = gw.hosts().map((h) => h.pid)
  const hostCpu0 = cpuOf(hostPids)
  const stats = gw.router.stats('telemetry').stats
  while (stats.eventsDone < TOTAL) await new Promise((r) => setTimeout(r, 2))
  const t1 = performance.now()
  const cpu = process.cpuUsage(stamp.cpu)
  const machine = (machineCpu() - stamp.machine) / TOTAL
  const hostCpu = cpuOf(hostPids) - hostCpu0
  if (inspector && profileDir) {
    const { profile } = await inspector.post('Profiler.stop')
    writeFileSync(join(profileDir, `drain-${queue}.cpuprofile`), JSON.stringify(profile))
    inspector.disconnect()
  }
  const info = gw.function('telemetry')
  await gw.stop()
  if (info?.counts.eventsDone !== TOTAL || info.counts.eventsDead !== 0) throw new Error(`gateway: ${JSON.stringify(info?.counts)}`)
  // One batch at a time (the queue is the order key): a batch's cycle against the time its
  // invocation took (dispatch -> result) shows how much of the cycle is the worker host's.
  const cycleMs = (t1 - stamp.at) / info.counts.invocations
  process.stderr.write(
    `  gateway: ${info.counts.invocations} invocations for ${TOTAL} events; per batch ${fmt(cycleMs, 2)} ms, of it the invocation p50 ${info.latencyMs?.p50 ?? '-'} ms\n`,
  )
  return { rate: TOTAL / ((t1 - stamp.at) / 1000), cpuUs: (cpu.user + cpu.system) / TOTAL, hostCpuUs: hostCpu / TOTAL, machine }
}

async function drained(model: ChannelModel, queue: string): Promise<void> {
  const ch = await model.createChannel()
  // Acks are asynchronous frames: give the broker a moment to count the last ones.
  for (let i = 0; i < 100; i++) {
    const { messageCount } = await ch.checkQueue(queue)
    if (messageCount === 0) break
    await new Promise((r) => setTimeout(r, 50))
  }
  const { messageCount } = await ch.checkQueue(queue)
  await ch.deleteQueue(queue)
  await ch.close()
  if (messageCount !== 0) throw new Error(`${queue} still holds ${messageCount} messages`)
}

/** Messages per second, CPU time of this process per message, and of the gateway's worker hosts. */
interface Drain {
  rate: number
  cpuUs: number
  hostCpuUs?: number
  /** The whole machine's CPU per message (us), RabbitMQ included (cpu.ts machineCpu). */
  machine: number
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-amqp-'))
writeFileSync(join(dir, 'fn.js'), FN)
const model = await connect(URL)
const rates: { bare: number[]; gateway: number[] } = { bare: [], gateway: [] }
const cpus: { bare: number[]; gateway: number[] } = { bare: [], gateway: [] }
const hostCpus: number[] = []
const machines: { bare: number[]; gateway: number[] } = { bare: [], gateway: [] }
let size = 0
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const kind of ['bare', 'gateway'] as const) {
      const queue = `sluice-bench-${kind}-${process.pid}-${round}`
      size = await prefill(model, queue)
      const { rate, cpuUs, hostCpuUs, machine } = kind === 'bare' ? await bare(model, queue) : await gateway(queue, dir)
      await drained(model, queue)
      rates[kind].push(rate)
      cpus[kind].push(cpuUs)
      machines[kind].push(machine)
      if (hostCpuUs !== undefined) hostCpus.push(hostCpuUs)
      const host = hostCpuUs === undefined ? '' : ` + ${fmt(hostCpuUs, 1)} worker hosts`
      process.stderr.write(
        `round ${round} ${kind.padEnd(7)} ${fmt(rate, 0).padStart(8)} msg/s  ${fmt(cpuUs, 1)}${host} us CPU/msg, machine ${fmt(machine, 1)}\n`,
      )
    }
  }
} finally {
  await model.close()
  rmSync(dir, { recursive: true, force: true })
}
const b = median(rates.bare)
const g = median(rates.gateway)
/** Machine CPU per message, cores busy while draining, and the ratio with every core busy at that cost. */
const budget = (kind: 'bare' | 'gateway', rate: number) => {
  const m = median(machines[kind])
  return `machine ${fmt(m, 1)} us/msg, ${fmt((m * rate) / 1e6)} cores busy, ceiling ${fmt(ceilingRate(m) / b)}x`
}
console.log(`\namqp drain, ${TOTAL} messages of ~${Math.round(size)} bytes, prefetch ${PREFETCH}, ${ROUNDS} alternating rounds (median msg/s)`)
console.log(
  `bare amqplib consumer     ${fmt(b, 0).padStart(8)}   (rounds: ${rates.bare.map((r) => fmt(r, 0)).join(', ')})   ${fmt(median(cpus.bare), 1)} us CPU/msg   ${budget('bare', b)}`,
)
console.log(
  `sluice gateway            ${fmt(g, 0).padStart(8)}   (rounds: ${rates.gateway.map((r) => fmt(r, 0)).join(', ')})   ${fmt(median(cpus.gateway), 1)} + ${fmt(median(hostCpus), 1)} us CPU/msg (process + worker hosts)   ${fmt(g / b)}x bare   ${budget('gateway', g)}`,
)
recordSummary({
  source: 'AMQP drain',
  ratio: g / b,
  baseline: 'bare amqplib',
  cpuGateway: median(cpus.gateway),
  cpuHosts: median(hostCpus),
  cpuBaseline: median(cpus.bare),
  machine: median(machines.gateway),
  machineBaseline: median(machines.bare),
  ceiling: ceilingRate(median(machines.gateway)) / b,
})
