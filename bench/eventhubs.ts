/**
 * Event Hubs: events/s read from pre-filled partitions of the Event Hubs test server (in a process
 * of its own) by
 *   (1) a bare EventHubConsumerClient that subscribes to every partition and counts the events (no
 *       checkpoint store: the SDK's in-memory one, nothing checkpointed), and
 *   (2) the gateway: the eventhubs trigger (sluice checkpoint store on the SQLite file, a checkpoint
 *       per finished batch), router, worker host and a telemetry function that scans each batch.
 * Both read with maxBatchSize 100 and prefetch 300, from a fresh hub each round; rounds alternate.
 * Ratio = gateway / bare per pair of rounds, median reported (goal: at least 0.8x). Also the CPU
 * time the consuming side spends per event (bare: this process; gateway: this process and its
 * worker host, read from /proc), which a busy machine disturbs less than wall-clock rates.
 *
 *   node --no-node-snapshot --import tsx bench/eventhubs.ts [perPartition] [partitions] [rounds]
 *
 * SLUICE_BENCH_PROFILE=<dir> writes a CPU profile of this process for each measured gateway drain.
 */
import { fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { EventHubConsumerClient, earliestEventPosition } from '@azure/event-hubs'
import { benchGateway, fmt, median, TELEMETRY_FN } from './common.js'
import { ceilingRate, cpuOf, machineCpu, selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const PER_PARTITION = Number(process.argv[2] ?? 25_000)
const PARTITIONS = Number(process.argv[3] ?? 4)
const ROUNDS = Number(process.argv[4] ?? 3)
const TOTAL = PER_PARTITION * PARTITIONS
const READ = { maxBatchSize: 100, prefetchCount: 300 }

const FN = TELEMETRY_FN

const serverProcess = fork(new URL('./eventhubs-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] })
const { connectionString } = await new Promise<{ connectionString: string }>((resolve) =>
  serverProcess.once('message', (m) => resolve(m as { connectionString: string })),
)

interface Round {
  rate: number
  /** CPU microseconds per event on the consuming side (gateway: this process and its worker hosts). */
  cpuUsPerEvent: number
  /** The gateway's share: this process, and its worker hosts. */
  processUs?: number
  hostUs?: number
  /** The whole machine's CPU per event (us), the test server included (cpu.ts machineCpu). */
  machine: number
}

let hubSeq = 0
async function filledHub(): Promise<string> {
  const hub = `bench-${++hubSeq}`
  serverProcess.send({ fill: { hub, partitions: PARTITIONS, perPartition: PER_PARTITION } })
  await new Promise<void>((resolve) => {
    const on = (m: { filled?: string }) => {
      if (m.filled !== hub) return
      serverProcess.off('message', on)
      resolve()
    }
    serverProcess.on('message', on)
  })
  return hub
}

async function bare(hub: string): Promise<Round> {
  const client = new EventHubConsumerClient('$Default', connectionString, hub)
  // Connected before the clock starts, as the gateway is once its start resolves.
  await client.getEventHubProperties()
  let n = 0
  let done!: () => void
  const finished = new Promise<void>((r) => (done = r))
  const t0 = performance.now()
  const c0 = selfCpu()
  const m0 = machineCpu()
  const sub = client.subscribe(
    {
      processEvents: async (events) => {
        n += events.length
        if (n >= TOTAL) done()
      },
      processError: async (err) => {
        process.stderr.write(`bare consumer: ${err.message}\n`)
      },
    },
    { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1, ...READ },
  )
  await finished
  const rate = TOTAL / ((performance.now() - t0) / 1000)
  const cpuUsPerEvent = (selfCpu() - c0) / TOTAL
  const machine = (machineCpu() - m0) / TOTAL
  await sub.close()
  await client.close()
  return { rate, cpuUsPerEvent, machine }
}

async function gateway(hub: string, profile?: string): Promise<Round & { invocations: number }> {
  const gw = await benchGateway(
    `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1 }
store: { path: state.db }
connections:
  hub: { kind: eventhubs, connectionString: "${connectionString}", eventHub: ${hub} }
functions:
  telemetry:
    code: fn.js
    trigger: { eventhubs: { connection: hub, maxBatchSize: ${READ.maxBatchSize}, prefetchCount: ${READ.prefetchCount}, maxWaitTimeInSeconds: 1 } }
    batch: { maxSize: 100, maxWaitMs: 5 }
    scale: { min: 4, max: 4 }
`,
    { 'fn.js': FN },
  )
  // Gateway.start resolves once the trigger subscribed: the clock starts here.
  // SLUICE_BENCH_PROFILE=<dir>: a CPU profile of this process while the gateway drains.
  const inspector = profile ? new Session() : undefined
  if (inspector) {
    inspector.connect()
    await inspector.post('Profiler.enable')
    await inspector.post('Profiler.start')
  }
  const t0 = performance.now()
  const hostPids = gw.hosts().map((h) => h.pid)
  const hostCpu = () => cpuOf(hostPids)
  const p0 = selfCpu()
  const h0 = hostCpu()
  const m0 = machineCpu()
  // The router's counters (gw.function builds the whole admin view: too costly to poll every 2 ms).
  const stats = gw.router.stats('telemetry').stats
  while (stats.eventsDone + stats.eventsDead < TOTAL) await new Promise((r) => setTimeout(r, 2))
  const rate = TOTAL / ((performance.now() - t0) / 1000)
  const processUs = (selfCpu() - p0) / TOTAL
  const hostUs = (hostCpu() - h0) / TOTAL
  const machine = (machineCpu() - m0) / TOTAL
  const cpuUsPerEvent = processUs + hostUs
  if (inspector && profile) {
    const { profile: p } = await inspector.post('Profiler.stop')
    writeFileSync(profile, JSON.stringify(p))
    inspector.disconnect()
  }
  const info = gw.function('telemetry')
  await gw.stop()
  if ((info?.counts.eventsDead ?? 0) > 0) throw new Error(`${info?.counts.eventsDead} events were dead-lettered`)
  return { rate, cpuUsPerEvent, processUs, hostUs, machine, invocations: info?.counts.invocations ?? 0 }
}

const bares: Round[] = []
const gws: Round[] = []
// A warm-up round of each, not counted: JIT, first connections.
await bare(await filledHub())
await gateway(await filledHub())
for (let r = 0; r < ROUNDS; r++) {
  const b = await bare(await filledHub())
  const profileDir = process.env.SLUICE_BENCH_PROFILE
  const g = await gateway(await filledHub(), profileDir ? join(profileDir, `eventhubs-${process.pid}-${r + 1}.cpuprofile`) : undefined)
  bares.push(b)
  gws.push(g)
  process.stderr.write(
    `round ${r + 1}: bare ${fmt(b.rate, 0)}/s (${fmt(b.cpuUsPerEvent, 1)} us CPU/event), gateway ${fmt(g.rate, 0)}/s (${fmt(g.cpuUsPerEvent, 1)} = ${fmt(g.processUs ?? 0, 1)} process + ${fmt(g.hostUs ?? 0, 1)} host us CPU/event, ${g.invocations} invocations): ${fmt(g.rate / b.rate)}x; machine ${fmt(b.machine, 1)} / ${fmt(g.machine, 1)} us/event\n`,
  )
}
serverProcess.disconnect()

const ratios = gws.map((g, i) => g.rate / (bares[i] as Round).rate)
console.log(`\nevent hubs, ${PARTITIONS} partitions x ${PER_PARTITION} events, ${ROUNDS} alternating rounds (medians)`)
const baseRate = median(bares.map((b) => b.rate))
/** Machine CPU per event, cores busy while draining, and the ratio with every core busy at that cost. */
const budget = (rs: Round[]) => {
  const m = median(rs.map((r) => r.machine))
  return `${fmt(m, 1).padStart(11)}   ${fmt((m * median(rs.map((r) => r.rate))) / 1e6).padStart(10)}   ${fmt(ceilingRate(m) / baseRate).padStart(7)}x`
}
console.log(`                                  events/s   us CPU/event   machine us   cores busy   ceiling`)
console.log(
  `bare EventHubConsumerClient     ${fmt(baseRate, 0).padStart(10)}   ${fmt(median(bares.map((b) => b.cpuUsPerEvent)), 1).padStart(12)}   ${budget(bares)}`,
)
console.log(
  `gateway (trigger -> function)   ${fmt(median(gws.map((g) => g.rate)), 0).padStart(10)}   ${fmt(median(gws.map((g) => g.cpuUsPerEvent)), 1).padStart(12)}   ${budget(gws)}   (${fmt(median(gws.map((g) => g.processUs ?? 0)), 1)} process + ${fmt(median(gws.map((g) => g.hostUs ?? 0)), 1)} worker host)`,
)
recordSummary({
  source: 'Event Hubs',
  ratio: median(ratios),
  baseline: 'bare EventHubConsumerClient',
  cpuGateway: median(gws.map((g) => g.processUs ?? 0)),
  cpuHosts: median(gws.map((g) => g.hostUs ?? 0)),
  cpuBaseline: median(bares.map((b) => b.cpuUsPerEvent)),
  machine: median(gws.map((g) => g.machine)),
  machineBaseline: median(bares.map((b) => b.machine)),
  ceiling: ceilingRate(median(gws.map((g) => g.machine))) / baseRate,
})
console.log(`ratio gateway / bare (median of per-round ratios): ${fmt(median(ratios))}x (rounds: ${ratios.map((r) => fmt(r)).join(', ')})`)
