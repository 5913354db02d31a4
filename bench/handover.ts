/**
 * Hand-over: the function pipeline a stream connector feeds, without a broker. MQTT-like
 * messages (~200-byte JSON payloads as Buffers) become events in this process, go to the router
 * in groups of 100 with at most 1000 events in flight (as the MQTT trigger hands them over), run
 * through a worker host and the telemetry function, and their outcomes come back. Two ways of
 * making the event, alternating in one gateway:
 *   parsed  decodePayload parses the body here (the router then serializes it again)
 *   raw     decodePayload({ raw: true }): the text goes to the isolate unparsed (TriggerEvent.rawBody)
 * CPU per event (this process, and the worker host from /proc) is the figure to read on a busy
 * machine.
 *
 *   node --no-node-snapshot --import tsx bench/handover.ts [events=100000] [rounds=3] [parsed,raw]
 *
 * SLUICE_BENCH_PROFILE=<dir> writes a CPU profile of this process covering the measured rounds
 * (run one kind alone to profile it); SLUICE_HOST_CPU_PROF=<dir> profiles the worker host.
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { decodePayload, type TriggerEvent } from '../src/sdk/index.js'
import { benchGateway, fmt, median, TELEMETRY_FN } from './common.js'
import { cpuOf, selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const TOTAL = Number(process.argv[2] ?? 100_000)
const ROUNDS = Number(process.argv[3] ?? 3)
const GROUP = 100
const INFLIGHT = 10
const KINDS = (process.argv[4] ?? 'parsed,raw').split(',') as Kind[]

type Kind = 'parsed' | 'raw'

function payload(i: number): Buffer {
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
  body.pad = 'x'.repeat(Math.max(0, 200 - JSON.stringify(body).length))
  return Buffer.from(JSON.stringify(body))
}

const payloads = Array.from({ length: TOTAL }, (_, i) => payload(i))

function event(kind: Kind, i: number): TriggerEvent {
  const topic = `bench/stations/st-${String(i % 200).padStart(3, '0')}/telemetry`
  const d = decodePayload(payloads[i] as Buffer, { raw: kind === 'raw' })
  const e: TriggerEvent = {
    id: `h-${i}`,
    source: `mqtt://devices/${topic}`,
    key: topic,
    time: '2026-11-27T10:00:00.000Z',
    body: d.body,
    meta: { topic, qos: 1, retain: false, dup: false, packetId: i % 65535 },
  }
  if (d.raw !== undefined) e.rawBody = d.raw
  return e
}

const gw = await benchGateway(
  `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1 }\nstore: { path: ':memory:' }\nfunctions:\n  telemetry:\n    code: fn.js\n    trigger: { timer: { schedule: "0 0 0 1 1 *" } }\n    batch: { maxSize: 100, maxWaitMs: 5 }\n    scale: { min: 2, max: 4 }\n`,
  { 'fn.js': TELEMETRY_FN },
)
const hostPids = () => gw.hosts().map((h) => h.pid)

async function drive(kind: Kind, n: number): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < n) {
      const from = next
      next = Math.min(n, next + GROUP)
      const events: TriggerEvent[] = []
      for (let i = from; i < next; i++) events.push(event(kind, i))
      const outcomes = await gw.router.deliver('telemetry', events)
      for (const o of outcomes) if (o.status !== 'done') throw new Error(`${kind}: an event ended ${o.status}`)
    }
  }
  await Promise.all(Array.from({ length: INFLIGHT }, lane))
}

interface Round {
  rate: number
  cpu: number
  hostCpu: number
}

const results: Record<Kind, Round[]> = { parsed: [], raw: [] }
for (const kind of KINDS) await drive(kind, 20_000)
const profileDir = process.env.SLUICE_BENCH_PROFILE
const inspector = profileDir ? new Session() : undefined
if (inspector) {
  inspector.connect()
  await inspector.post('Profiler.enable')
  await inspector.post('Profiler.start')
}
for (let r = 0; r < ROUNDS; r++) {
  for (const kind of KINDS) {
    const c0 = selfCpu()
    const h0 = cpuOf(hostPids())
    const t0 = performance.now()
    await drive(kind, TOTAL)
    const t1 = performance.now()
    const round = { rate: TOTAL / ((t1 - t0) / 1000), cpu: (selfCpu() - c0) / TOTAL, hostCpu: (cpuOf(hostPids()) - h0) / TOTAL }
    results[kind].push(round)
    process.stderr.write(`round ${r + 1} ${kind}: ${fmt(round.rate, 0)} events/s, CPU ${fmt(round.cpu, 1)} + ${fmt(round.hostCpu, 1)} us/event\n`)
  }
}
if (inspector && profileDir) {
  const { profile } = await inspector.post('Profiler.stop')
  writeFileSync(join(profileDir, `handover-${KINDS.join('-')}-${process.pid}.cpuprofile`), JSON.stringify(profile))
}
await gw.stop()
console.log(`\nhand-over, ${TOTAL} events of ~200 bytes, groups of ${GROUP}, ${GROUP * INFLIGHT} in flight, ${ROUNDS} alternating rounds (medians)\n`)
console.log('| event made as | events/s | CPU us/event: this process + worker host |')
console.log('| --- | --- | --- |')
for (const kind of KINDS) {
  const rs = results[kind]
  console.log(`| ${kind} | ${fmt(median(rs.map((x) => x.rate)), 0)} | ${fmt(median(rs.map((x) => x.cpu)), 1)} + ${fmt(median(rs.map((x) => x.hostCpu)), 1)} |`)
}
const med = (k: 'parsed' | 'raw', f: (x: Round) => number) => median(results[k].map(f))
if (KINDS.length === 2)
  recordSummary({
    source: 'hand-over, raw bodies (no broker)',
    ratio: med('raw', (x) => x.rate) / med('parsed', (x) => x.rate),
    baseline: 'the same events parsed in the gateway',
    cpuGateway: med('raw', (x) => x.cpu),
    cpuHosts: med('raw', (x) => x.hostCpu),
    cpuBaseline: med('parsed', (x) => x.cpu),
  })
