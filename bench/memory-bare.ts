// Child of bench/memory.ts: RSS per bare isolate (isolate + context + the compiled function).
import { readFileSync } from 'node:fs'
import ivm from 'isolated-vm'

const N = Number(process.argv[2] ?? 200)
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024
process.once('message', async (code: string) => {
  const keep: unknown[] = []
  const make = () => {
    const isolate = new ivm.Isolate({ memoryLimit: 64 })
    const context = isolate.createContextSync()
    isolate.compileScriptSync(`${code}\n;globalThis.r = __sluice_fn.default`).runSync(context)
    keep.push(isolate, context)
  }
  make()
  await new Promise((r) => setTimeout(r, 500))
  const before = rss()
  for (let i = 0; i < N; i++) make()
  await new Promise((r) => setTimeout(r, 1000))
  process.send?.((rss() - before) / N)
  process.disconnect?.()
  process.exit(0)
})
