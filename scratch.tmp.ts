import { SandboxPool } from './src/sandbox/pool.js'
import { compileFunction } from './src/sandbox/compile.js'
const log = { info: console.log, warn: console.log, error: console.log, debug: () => {}, child() { return log } } as any
const pool = new SandboxPool({ hosts: 1, prewarm: 2, prewarmSizes: [64], log })
await pool.start()
const c = await compileFunction('/tmp/fx/hello.ts', { root: '/tmp', functionName: 'hello' })
pool.registerCode(c.hash, c.code)
await new Promise(r => setTimeout(r, 100))
for (let i = 0; i < 5; i++) {
  const t0 = performance.now()
  const h = pool.create(0, { fn: 'hello', hash: c.hash, memoryMb: 64, outputs: [], initTimeoutMs: 1000 })
  const r = await pool.run(h, JSON.stringify([{ body: { x: 1 } }, { body: { x: 2 } }]), 'inv1', 1000, 1000)
  console.log((performance.now() - t0).toFixed(2), 'ms', JSON.stringify(r), await h.ready)
  await new Promise(r => setTimeout(r, 20))
}
console.log(pool.info())
await pool.close()
