/**
 * Cold start: first event to result for a function with no instance (worker host running),
 * through router + scheduler + worker host, against the raw floor measured in this same script:
 * new isolate + context + compile + call, in-process, nothing else.
 *
 *   node --no-node-snapshot --import tsx bench/cold-start.ts [iterations]
 */
import ivm from 'isolated-vm'
import { compileFunction } from '../src/sandbox/compile.js'
import type { TriggerEvent } from '../src/sdk/index.js'
import { benchGateway, fmt, progress, summary } from './common.js'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const N = Number(process.argv[2] ?? 200)
const FN = `export default async function (events) {
  let low = 0
  for (const e of events) if (e.body.battery < 15) low++
  return { low }
}`

async function floorOnce(code: string): Promise<number> {
  const events = JSON.stringify([{ id: 'x', body: { battery: 10 } }])
  const t0 = performance.now()
  const isolate = new ivm.Isolate({ memoryLimit: 64 })
  const context = isolate.createContextSync()
  const script = isolate.compileScriptSync(`${code}\n;globalThis.__run = (j) => Promise.resolve(__sluice_fn.default(JSON.parse(j))).then(JSON.stringify)`)
  script.runSync(context)
  const run = context.global.getSync('__run', { reference: true }) as ivm.Reference<(j: string) => Promise<string>>
  await run.apply(undefined, [events], { result: { promise: true } })
  const ms = performance.now() - t0
  isolate.dispose()
  return ms
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cold-'))
  writeFileSync(join(dir, 'fn.js'), FN)
  const compiled = await compileFunction(join(dir, 'fn.js'), { root: dir, functionName: 'fn' })

  const results: Record<string, number[]> = {}
  for (const prewarm of [2, 0]) {
    // N functions with the same code, so every first event meets a function with no instance.
    const yaml = `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: ${prewarm} }\nstore: { path: ':memory:' }\nfunctions:\n${Array.from(
      { length: N },
      (_, i) =>
        `  f${i}:\n    code: fn.js\n    trigger: { timer: { schedule: "0 0 0 1 1 *" } }\n    batch: { maxSize: 1, maxWaitMs: 0 }\n    scale: { min: 0, max: 1, idleTimeoutMs: 3600000 }\n`,
    ).join('')}`
    const gw = await benchGateway(yaml, { 'fn.js': FN })
    await new Promise((r) => setTimeout(r, 300))
    const gateway: number[] = []
    const floor: number[] = []
    for (let i = 0; i < N; i++) {
      const ev: TriggerEvent = { id: `e${i}`, source: 'bench', time: new Date().toISOString(), body: { battery: 10 }, meta: {} }
      const t0 = performance.now()
      const [o] = await gw.router.deliver(`f${i}`, [ev])
      gateway.push(performance.now() - t0)
      if (o?.status !== 'done') throw new Error(`f${i}: ${JSON.stringify(o)}`)
      floor.push(await floorOnce(compiled.code))
      // Give the host a moment to refill its blank isolates, as idle time between arrivals does.
      await new Promise((r) => setTimeout(r, 10))
      progress(`cold start (prewarm ${prewarm})`, i + 1, N)
    }
    await gw.stop()
    results[`gateway prewarm=${prewarm}`] = gateway
    results[`floor (run with prewarm=${prewarm})`] = floor
  }
  const floorAll = summary([...(results['floor (run with prewarm=2)'] ?? []), ...(results['floor (run with prewarm=0)'] ?? [])])
  console.log(`\ncold start, ${N} functions each, ms (first event -> result)`)
  console.log('case                         p50      p99     p99/floor p99')
  for (const [k, v] of Object.entries(results)) {
    const s = summary(v)
    console.log(`${k.padEnd(28)} ${fmt(s.p50).padStart(6)}  ${fmt(s.p99).padStart(7)}  ${fmt(s.p99 / floorAll.p99).padStart(8)}x`)
  }
  console.log(`floor (all)                  ${fmt(floorAll.p50).padStart(6)}  ${fmt(floorAll.p99).padStart(7)}`)
}

await main()
