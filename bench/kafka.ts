/**
 * Kafka: messages/s and CPU per message from a pre-filled topic on a real Apache Kafka 4 broker
 * (test/helpers/kafka-broker.ts, a JVM of its own) through the gateway (kafka trigger, router,
 * worker host, the telemetry function; offsets committed at the lowest unfinished offset), against
 * two bare kafkajs eachBatch consumers on the same partitions: one that JSON-parses every value
 * and commits each batch (the baseline), and one that only commits (context: kafkajs's own cost).
 * Each round reads the whole topic with a fresh consumer group, from the group join until every
 * partition's committed offset reached its end. Cases alternate within a round. CPU is this
 * process's (process.cpuUsage) plus, for the gateway, its worker hosts' (from /proc).
 *
 *   node --no-node-snapshot --import tsx bench/kafka.ts [messages] [partitions] [rounds] [parse,gateway,commit]
 *
 * The fourth argument picks the cases run each round (e.g. `gateway` alone for profiling).
 * SLUICE_BENCH_PROFILE=<dir> writes a CPU profile of this process for each gateway drain (group
 * join to the last commit; worker hosts: SLUICE_HOST_CPU_PROF). SLUICE_BENCH_KAFKA_OTHER=<file>
 * adds the case `other`: the gateway with the kafka connector exported (`kafkaConnector`) by that
 * file instead, e.g. a checkout of an earlier version, for before/after rounds in one run.
 * SLUICE_BENCH_KAFKA_BACKLOG=<n> sets the function's maxBacklog (default 10,000, which 8
 * partitions x 200 in flight never reach), so the drain runs under the router's back-pressure.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Writable } from 'node:stream'
import type { Admin, Kafka } from 'kafkajs'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'
import type { ConnectorDefinition } from '../src/sdk/index.js'
import { KafkaBroker } from '../test/helpers/kafka-broker.js'
import { fmt, median, TELEMETRY_FN } from './common.js'
import { ceilingRate, cpuOf, machineCpu, selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const TOTAL = Number(process.argv[2] ?? 100_000)
const PARTITIONS = Number(process.argv[3] ?? 8)
const ROUNDS = Number(process.argv[4] ?? 3)
const TOPIC = 'telemetry'
type Case = 'parse' | 'gateway' | 'other' | 'commit'
const OTHER = process.env.SLUICE_BENCH_KAFKA_OTHER
const CASES = (process.argv[5] ?? (OTHER ? 'parse,gateway,other,commit' : 'parse,gateway,commit')).split(',') as Case[]
const PROFILE_DIR = process.env.SLUICE_BENCH_PROFILE
const BACKLOG = process.env.SLUICE_BENCH_KAFKA_BACKLOG ? Number(process.env.SLUICE_BENCH_KAFKA_BACKLOG) : undefined
/** The kafka connector of SLUICE_BENCH_KAFKA_OTHER, for the case `other`. */
const otherKafka = OTHER ? ((await import(pathToFileURL(resolve(OTHER)).href)) as { kafkaConnector: ConnectorDefinition }).kafkaConnector : undefined

interface Result {
  rate: number
  /** CPU microseconds per message (this process, plus worker hosts for the gateway). */
  cpuUs: number
  /** Of cpuUs, the worker hosts' share (gateway cases; 0 for the bare consumers). */
  hostUs: number
  /** The whole machine's CPU per message (us), the broker's JVM included (cpu.ts machineCpu). */
  machineUs: number
}

async function fill(kafka: Kafka): Promise<void> {
  const producer = kafka.producer()
  await producer.connect()
  const CHUNK = 1000
  for (let i = 0; i < TOTAL; i += CHUNK) {
    await producer.send({
      topic: TOPIC,
      acks: -1,
      messages: Array.from({ length: Math.min(CHUNK, TOTAL - i) }, (_, j) => {
        const k = i + j
        const station = `st-${String(k % 200).padStart(3, '0')}`
        return { key: station, value: JSON.stringify({ station, scooter: `sc-${k % 5000}`, battery: k % 100, speed: (k % 25) + 0.5, lat: 52.37, lon: 4.9 }) }
      }),
    })
  }
  await producer.disconnect()
}

/**
 * Resolves with the time at which every partition's committed offset of `group` reached its end.
 * Polls slowly until `nearlyDone()` (polling costs CPU on a 2-core machine), then fast.
 */
async function committedAll(admin: Admin, group: string, nearlyDone: () => boolean): Promise<number> {
  for (;;) {
    const [t] = await admin.fetchOffsets({ groupId: group, topics: [TOPIC] })
    const sum = (t?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0)
    if (sum >= TOTAL) return performance.now()
    await new Promise((r) => setTimeout(r, nearlyDone() ? 2 : 50))
  }
}

let round = 0

/** A bare kafkajs eachBatch consumer committing each batch's end; `parse` JSON-parses every value first. */
async function bare(kafka: Kafka, admin: Admin, parse: boolean): Promise<Result> {
  const group = `bare-${++round}`
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 1000 })
  let joined = 0
  let cpu0 = 0
  let m0 = 0
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joined ||= performance.now()
    cpu0 ||= selfCpu()
    m0 ||= machineCpu()
  })
  await consumer.connect()
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true })
  // Its own commits tell when it is done: no polling while it runs.
  const committed = new Map<number, number>()
  let end = 0
  let cpu1 = 0
  let m1 = 0
  let low = 0
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
        if (parse) for (const m of batch.messages) if ((JSON.parse(m.value?.toString() ?? 'null') as { battery: number }).battery < 15) low++
        resolveOffset(batch.lastOffset())
        const next = Number(batch.lastOffset()) + 1
        await commitOffsetsIfNecessary({ topics: [{ topic: TOPIC, partitions: [{ partition: batch.partition, offset: String(next) }] }] })
        committed.set(batch.partition, next)
        if (!end && [...committed.values()].reduce((a, b) => a + b, 0) >= TOTAL) {
          end = performance.now()
          cpu1 = selfCpu()
          m1 = machineCpu()
          resolve()
        }
      },
    })
  })
  await committedAll(admin, group, () => true) // the broker agrees
  await consumer.disconnect()
  if (parse && low === 0) throw new Error('the parsing baseline parsed nothing')
  return { rate: TOTAL / ((end - joined) / 1000), cpuUs: (cpu1 - cpu0) / TOTAL, hostUs: 0, machineUs: (m1 - m0) / TOTAL }
}

/**
 * The gateway with a kafka trigger on the same topic; the clock starts at its group join.
 * `kafka`: another kafka connector definition than the gateway's own.
 */
async function gateway(address: string, admin: Admin, kafka?: ConnectorDefinition): Promise<Result> {
  const group = `gateway-${++round}`
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-kafka-'))
  writeFileSync(join(dir, 'fn.js'), TELEMETRY_FN)
  const yaml = `http: { port: 0, host: 127.0.0.1 }
store: { path: ':memory:' }
log: { level: info }
connections:
  stream: { kind: kafka, brokers: ["${address}"] }
functions:
  consume:
    code: fn.js
    trigger: { kafka: { connection: stream, topic: ${TOPIC}, groupId: ${group} } }
${BACKLOG ? `    maxBacklog: ${BACKLOG}\n` : ''}`
  let joined = 0
  let cpu0 = 0
  let m0 = 0
  let host0 = 0
  let hostPids: number[] = []
  const hostCpu = () => cpuOf(hostPids)
  const inspector = PROFILE_DIR ? new Session() : undefined
  if (inspector) {
    inspector.connect()
    await inspector.post('Profiler.enable')
  }
  const logs = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString()
      if (!joined && s.includes('kafka partitions assigned')) {
        joined = performance.now()
        host0 = hostCpu()
        cpu0 = selfCpu() + host0
        m0 = machineCpu()
        // The profile covers the drain only (not the gateway's start).
        if (inspector) void inspector.post('Profiler.start')
      }
      if (s.includes('"level":"error"') || s.includes('"level":"warn"')) process.stderr.write(s)
      cb()
    },
  })
  const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
  const connectors = kafka ? CONNECTORS.map((d) => (d.kind === 'kafka' ? kafka : d)) : CONNECTORS
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, connectors, logger: createLogger('info', logs as never) })
  hostPids = gw.hosts().map((h) => h.pid)
  if (joined) {
    // joined before the hosts were known: count from now
    host0 = hostCpu()
    cpu0 = selfCpu() + host0
  }
  let processedAt = 0
  // router.stats is a field read (gw.function() computes percentiles: too costly to poll).
  const watch = setInterval(() => {
    if (!processedAt && gw.router.stats('consume').stats.eventsDone >= TOTAL) processedAt = performance.now()
  }, 5)
  const end = await committedAll(admin, group, () => processedAt > 0)
  const m1 = machineCpu()
  const host1 = hostCpu()
  const cpu1 = selfCpu() + host1
  clearInterval(watch)
  if (inspector && PROFILE_DIR) {
    const { profile } = await inspector.post('Profiler.stop')
    writeFileSync(join(PROFILE_DIR, `${group}.cpuprofile`), JSON.stringify(profile))
    inspector.disconnect()
  }
  const counts = gw.function('consume')?.counts
  const done = counts?.eventsDone ?? 0
  process.stderr.write(`  gateway: ${counts?.invocations ?? 0} invocations for ${done} events\n`)
  await gw.stop()
  rmSync(dir, { recursive: true, force: true })
  if (done < TOTAL) throw new Error(`only ${done} of ${TOTAL} events were done`)
  return { rate: TOTAL / ((end - joined) / 1000), cpuUs: (cpu1 - cpu0) / TOTAL, hostUs: (host1 - host0) / TOTAL, machineUs: (m1 - m0) / TOTAL }
}

process.stderr.write('starting a Kafka 4 broker...\n')
const broker = await KafkaBroker.start()
try {
  const kafka = broker.client('bench')
  await broker.createTopic(TOPIC, PARTITIONS)
  await fill(kafka)
  const admin = await broker.admin()
  process.stderr.write(`topic ${TOPIC}: ${TOTAL} messages in ${PARTITIONS} partitions on Kafka 4 (${broker.address})\n`)
  // Warm-up: the first reads pay for JIT and the broker's first serves.
  await bare(kafka, admin, true)
  await gateway(broker.address, admin)
  const runs: Record<Case, Result[]> = { parse: [], gateway: [], other: [], commit: [] }
  const run = (c: Case): Promise<Result> => {
    if (c === 'parse' || c === 'commit') return bare(kafka, admin, c === 'parse')
    return gateway(broker.address, admin, c === 'other' ? otherKafka : undefined)
  }
  for (let i = 0; i < ROUNDS; i++) {
    for (const c of CASES) runs[c].push(await run(c))
    const line = (k: Case) => {
      const r = runs[k][i]
      return `${k} ${fmt(r?.rate ?? 0, 0)}/s ${fmt(r?.cpuUs ?? 0, 1)} us/msg${r?.hostUs ? ` (hosts ${fmt(r.hostUs, 1)})` : ''}, machine ${fmt(r?.machineUs ?? 0, 1)}`
    }
    process.stderr.write(`round ${i + 1}: ${CASES.map(line).join(', ')}\n`)
  }
  const rate = (k: Case) => median(runs[k].map((r) => r.rate))
  const cpu = (k: Case) => median(runs[k].map((r) => r.cpuUs))
  const base = runs.parse.length > 0 ? rate('parse') : Number.NaN
  const baseCpu = runs.parse.length > 0 ? cpu('parse') : Number.NaN
  console.log(`\nkafka 4 (real broker), ${TOTAL} messages, ${PARTITIONS} partitions, median of ${ROUNDS} rounds (join -> last commit)`)
  console.log('                                              msgs/s   rate   CPU us/msg   CPU   of it hosts   machine us/msg   cores busy   ceiling')
  const machine = (k: Case) => median(runs[k].map((r) => r.machineUs))
  const row = (label: string, k: Case) => {
    if (runs[k].length === 0) return
    const host = median(runs[k].map((r) => r.hostUs))
    const m = machine(k)
    console.log(
      `${label.padEnd(44)}${fmt(rate(k), 0).padStart(8)}  ${fmt(rate(k) / base).padStart(5)}x  ${fmt(cpu(k), 1).padStart(10)}  ${fmt(cpu(k) / baseCpu).padStart(5)}x${(host ? fmt(host, 1) : '-').padStart(12)}${fmt(m, 1).padStart(17)}${fmt((m * rate(k)) / 1e6, 2).padStart(13)}${fmt(ceilingRate(m) / base).padStart(9)}x`,
    )
  }
  row('bare kafkajs eachBatch, JSON.parse + commit', 'parse')
  row('gateway (kafka trigger -> function)', 'gateway')
  row('gateway, SLUICE_BENCH_KAFKA_OTHER connector', 'other')
  row('bare kafkajs eachBatch, commit only', 'commit')
  if (runs.gateway.length > 0 && runs.parse.length > 0)
    recordSummary({
      source: 'Kafka',
      ratio: rate('gateway') / base,
      baseline: 'bare kafkajs eachBatch, JSON.parse + commit',
      cpuGateway: cpu('gateway'),
      cpuBaseline: baseCpu,
      machine: machine('gateway'),
      machineBaseline: machine('parse'),
      ceiling: ceilingRate(machine('gateway')) / base,
      note: 'CPU: process + worker hosts together',
    })
} finally {
  await broker.close()
}
