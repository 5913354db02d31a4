/**
 * Warm path: events/s through router + scheduler + worker host with batches of 100, against the
 * same function called in this process (1) as plain JavaScript and (2) inside an isolate with the
 * same JSON hand-over and the call style worker hosts use (applySync, the result copied out after
 * the isolate's microtasks), without router, scheduler or worker host. The gateway gets every
 * event in one deliver call (a backlog draining): handing them over in groups of 1,000 with a turn
 * of the event loop between them measured slower (88k against 152k events/s), although one call
 * admits every event before the first batch leaves.
 *
 *   node --no-node-snapshot --import tsx bench/warm-path.ts [events]
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import ivm from 'isolated-vm'
import { compileFunction } from '../src/sandbox/compile.js'
import type { TriggerEvent } from '../src/sdk/index.js'
import { benchGateway, fmt, TELEMETRY_FN } from './common.js'
import { cpuOf, selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const TOTAL = Number(process.argv[2] ?? 200_000)
const BATCH = 100
const FN = TELEMETRY_FN

const makeEvents = (n: number, offset = 0): TriggerEvent[] =>
  Array.from({ length: n }, (_, i) => {
    const k = offset + i
    return {
      id: `e${k}`,
      source: 'mqtt://devices/stations/st-001/telemetry',
      key: `stations/st-${String(k % 200).padStart(3, '0')}/telemetry`,
      time: '2026-11-27T10:00:00.000Z',
      body: { station: `st-${String(k % 200).padStart(3, '0')}`, scooter: `sc-${k % 5000}`, battery: k % 100, speed: (k % 25) + 0.5, lat: 52.37, lon: 4.9 },
      meta: { topic: `stations/st-${String(k % 200).padStart(3, '0')}/telemetry`, qos: 1 },
    }
  })

async function plainJs(file: string): Promise<number> {
  const mod = (await import(pathToFileURL(file).href)) as { default: (e: TriggerEvent[]) => Promise<unknown> }
  const batches = Array.from({ length: TOTAL / BATCH }, (_, i) => makeEvents(BATCH, i * BATCH))
  const t0 = performance.now()
  for (const b of batches) await mod.default(b)
  return TOTAL / ((performance.now() - t0) / 1000)
}

async function inIsolate(code: string): Promise<number> {
  const isolate = new ivm.Isolate({ memoryLimit: 64 })
  const context = isolate.createContextSync()
  isolate
    .compileScriptSync(
      `${code}\n;globalThis.__run = (j) => { const box = [null]; Promise.resolve(__sluice_fn.default(JSON.parse(j))).then((v) => { box[0] = JSON.stringify(v) }); return box }`,
    )
    .runSync(context)
  const run = context.global.getSync('__run', { reference: true }) as ivm.Reference<(j: string) => [string | null]>
  const batches = Array.from({ length: TOTAL / BATCH }, (_, i) => makeEvents(BATCH, i * BATCH))
  const t0 = performance.now()
  for (const b of batches) {
    const [out] = run.applySync(undefined, [JSON.stringify(b)], { result: { copy: true } }) as [string | null]
    if (out === null) throw new Error('the function did not settle inside the call')
  }
  const rate = TOTAL / ((performance.now() - t0) / 1000)
  isolate.dispose()
  return rate
}

async function gateway(hosts: number): Promise<{ rate: number; cpu: number; hostCpu: number }> {
  const gw = await benchGateway(
    `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: ${hosts} }\nstore: { path: ':memory:' }\nfunctions:\n  telemetry:\n    code: fn.js\n    trigger: { timer: { schedule: "0 0 0 1 1 *" } }\n    batch: { maxSize: ${BATCH}, maxWaitMs: 5 }\n    scale: { min: 4, max: 4 }\n    maxBacklog: 1000000\n`,
    { 'fn.js': FN },
  )
  await new Promise((r) => setTimeout(r, 300))
  // Warm up, then measure delivering everything at once (a backlog draining).
  await gw.router.deliver('telemetry', makeEvents(10_000))
  const events = makeEvents(TOTAL)
  const pids = gw.hosts().map((h) => h.pid)
  const c0 = selfCpu()
  const h0 = cpuOf(pids)
  const t0 = performance.now()
  const outcomes = await gw.router.deliver('telemetry', events)
  const rate = TOTAL / ((performance.now() - t0) / 1000)
  const cpu = (selfCpu() - c0) / TOTAL
  const hostCpu = (cpuOf(pids) - h0) / TOTAL
  if (outcomes.some((o) => o.status !== 'done')) throw new Error('not every event was done')
  const info = gw.function('telemetry')
  await gw.stop()
  process.stderr.write(`gateway (hosts=${hosts}): ${info?.counts.invocations} invocations, ${info?.counts.eventsDone} events\n`)
  return { rate, cpu, hostCpu }
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-warm-'))
writeFileSync(join(dir, 'fn.mjs'), FN)
writeFileSync(join(dir, 'fn.js'), FN)
const compiled = await compileFunction(join(dir, 'fn.js'), { root: dir, functionName: 'fn' })

const js = await plainJs(join(dir, 'fn.mjs'))
const iso = await inIsolate(compiled.code)
const g1 = await gateway(1)
const g2 = await gateway(2)
const gw1 = g1.rate
const gw2 = g2.rate
console.log(`\nwarm path, ${TOTAL} events in batches of ${BATCH} (events/s)`)
console.log(`in-process, plain JS          ${fmt(js, 0).padStart(10)}`)
console.log(`in-process, one isolate       ${fmt(iso, 0).padStart(10)}`)
console.log(`gateway, 1 worker host        ${fmt(gw1, 0).padStart(10)}   ${fmt(gw1 / iso)}x isolate   ${fmt(gw1 / js, 3)}x plain JS`)
console.log(`gateway, 2 worker hosts       ${fmt(gw2, 0).padStart(10)}   ${fmt(gw2 / iso)}x isolate   ${fmt(gw2 / js, 3)}x plain JS`)
console.log(`CPU us/event (gateway + worker hosts): 1 host ${fmt(g1.cpu, 1)} + ${fmt(g1.hostCpu, 1)}, 2 hosts ${fmt(g2.cpu, 1)} + ${fmt(g2.hostCpu, 1)}`)
recordSummary({
  source: 'warm path (1 worker host)',
  ratio: gw1 / iso,
  baseline: 'one in-process isolate, same hand-over',
  cpuGateway: g1.cpu,
  cpuHosts: g1.hostCpu,
})
