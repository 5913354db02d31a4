/**
 * What one call into an isolate costs, by isolated-vm call style (the HTTP lead of issue 11):
 * the worker host calls `run` with `apply` (async: the call runs on isolated-vm's thread pool and
 * the result comes back on the next turn); `applySync` runs it on the host's own thread (for a
 * function whose result is ready synchronously), with a promise result, and with an array the
 * isolate's microtasks filled in before the copy out (what the worker host does since issue 11). `applySyncPromise` cannot be measured: isolated-vm
 * refuses it on Node's main thread ("This function may not be called from the default thread"). The function is the HTTP benchmark's one-line reply wrapped in the same
 * envelope shape. Sequential calls and 10 concurrent ones (as 10 HTTP connections would make);
 * CPU per call of this process and threads created per second (from /proc).
 *
 *   node --no-node-snapshot --import tsx bench/isolate-call.ts [calls=20000]
 */
import { readFileSync } from 'node:fs'
import ivm from 'isolated-vm'
import { fmt } from './common.js'
import { selfCpu } from './cpu.js'
import { recordSummary } from './summary.js'

const CALLS = Number(process.argv[2] ?? 20_000)

/** Processes and threads this process has created so far (the `processes` line of /proc/stat is system-wide; our own count comes from task ids). */
function threads(): number {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0)
  } catch {
    return 0
  }
}
/** System-wide forks+clones so far (threads created), from /proc/stat. */
function forks(): number {
  try {
    return Number(/^processes\s+(\d+)/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? 0)
  } catch {
    return 0
  }
}

const isolate = new ivm.Isolate({ memoryLimit: 64 })
const context = isolate.createContextSync()
const script = `
const reply = (events) => ({ status: 200, body: { ok: true, n: 42 } });
globalThis.runAsync = (json) => Promise.resolve(reply(JSON.parse(json))).then((v) => JSON.stringify({ ok: true, value: v, logs: [] }));
globalThis.runSync = (json) => JSON.stringify({ ok: true, value: reply(JSON.parse(json)), logs: [] });
globalThis.runBox = (json) => { const box = [null]; Promise.resolve(reply(JSON.parse(json))).then((v) => { box[0] = JSON.stringify({ ok: true, value: v, logs: [] }) }); return box };`
isolate.compileScriptSync(script).runSync(context)
const runAsync = context.global.getSync('runAsync', { reference: true }) as ivm.Reference<(j: string) => Promise<string>>
const runSync = context.global.getSync('runSync', { reference: true }) as ivm.Reference<(j: string) => string>
const runBox = context.global.getSync('runBox', { reference: true }) as ivm.Reference<(j: string) => [string | null]>
const EVENT = JSON.stringify([
  {
    attempt: 1,
    id: 'r1',
    source: 'http://api/stations/st-007',
    time: '2026-11-27T10:00:00.000Z',
    body: null,
    meta: { method: 'GET', path: '/stations/st-007', headers: { host: 'x' } },
  },
])

type Style = 'apply (async)' | 'applySync' | 'applySync, promise result' | 'applySync, array result'
const call: Record<Style, () => Promise<unknown>> = {
  'apply (async)': () => runAsync.apply(undefined, [EVENT], { timeout: 1000, result: { promise: true } }),
  applySync: async () => runSync.applySync(undefined, [EVENT], { timeout: 1000 }),
  // The async function on the host's thread: its microtasks run before the call returns, so the
  // promise comes back settled, but the promise transfer costs a few microseconds.
  'applySync, promise result': () => runAsync.applySync(undefined, [EVENT], { timeout: 1000, result: { promise: true } }),
  // What the worker host does since issue 11: the same async function, its envelope handed back
  // in an array the microtasks filled in before the copy out (see src/sandbox/host/bootstrap.ts).
  'applySync, array result': async () => (runBox.applySync(undefined, [EVENT], { timeout: 1000, result: { copy: true } }) as [string | null])[0],
}

async function measure(style: Style, concurrency: number): Promise<{ rate: number; cpu: number; threadsPerS: number }> {
  const f0 = forks()
  const c0 = selfCpu()
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < CALLS) await call[style]()
    }),
  )
  const s = (performance.now() - t0) / 1000
  return { rate: CALLS / s, cpu: (selfCpu() - c0) / CALLS, threadsPerS: (forks() - f0) / s }
}

const styles: Style[] = ['apply (async)', 'applySync', 'applySync, promise result', 'applySync, array result']
for (const st of styles) await measure(st, 1) // warm-up
console.log(`\nisolate calls, ${CALLS} per case, threads in this process at start: ${threads()}\n`)
console.log('| call style | concurrency | calls/s | CPU us/call | threads created/s (whole machine) |')
console.log('| --- | --- | --- | --- | --- |')
const rows: Record<string, { rate: number; cpu: number }> = {}
for (const conc of [1, 10]) {
  for (const st of styles) {
    const r = await measure(st, conc)
    rows[`${st}@${conc}`] = r
    console.log(`| ${st} | ${conc} | ${fmt(r.rate, 0)} | ${fmt(r.cpu, 1)} | ${fmt(r.threadsPerS, 0)} |`)
  }
}
isolate.dispose()
const a = rows['apply (async)@10']
const p = rows['applySync, array result@10']
if (a && p)
  recordSummary({
    source: 'isolate call, applySync with array result (10 concurrent)',
    ratio: p.rate / a.rate,
    baseline: 'async apply',
    cpuHosts: p.cpu,
    cpuBaseline: a.cpu,
    note: 'worker-host side of one HTTP request, no process hop',
  })
