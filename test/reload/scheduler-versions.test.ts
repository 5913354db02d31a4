/**
 * Scheduler.update with new code, on a real worker host: an instance of the previous version
 * finishes the batch it runs, is never leased again and stops when released; an idle one stops at
 * once; new leases get instances of the new version.
 */
import { expect, it, onTestFinished } from 'vitest'
import { asLogger, createLogger } from '../../src/log.js'
import { compileFunction } from '../../src/sandbox/compile.js'
import { SandboxPool } from '../../src/sandbox/pool.js'
import { Scheduler, type FunctionSpec } from '../../src/scheduler/scheduler.js'
import { projectDir, waitFor } from '../helpers/gateway.js'

const code = (v: string) => `export default async (events: Array<{ body: { ms: number } }>) => {
  const end = Date.now() + events[0].body.ms
  while (Date.now() < end) {}
  return '${v}'
}
`

it('retires instances of the previous code version and never hands them a new batch', async () => {
  const p = projectDir({ 'v1.ts': code('v1'), 'v2.ts': code('v2') })
  onTestFinished(() => p.cleanup())
  const [v1, v2] = await Promise.all([
    compileFunction(`${p.dir}/v1.ts`, { root: p.dir, functionName: 'f' }),
    compileFunction(`${p.dir}/v2.ts`, { root: p.dir, functionName: 'f' }),
  ])
  const log = asLogger(createLogger('warn'))
  const pool = new SandboxPool({ hosts: 1, prewarm: 0, prewarmSizes: [], log, heartbeatMs: 50 })
  await pool.start()
  onTestFinished(() => pool.close())
  const scheduler = new Scheduler(pool, { gateway: 0, log, hostMemoryMb: 512, maxInstancesPerHost: 8 })
  onTestFinished(() => scheduler.close())
  pool.registerCode(v1.hash, v1.code)
  const spec: FunctionSpec = {
    name: 'f',
    hash: v1.hash,
    memoryMb: 32,
    outputs: [],
    timeoutMs: 10_000,
    cpuTimeMs: 10_000,
    scale: { min: 0, max: 3, idleTimeoutMs: 60_000 },
  }
  scheduler.register(spec)
  scheduler.start()
  const batch = (ms: number) => JSON.stringify([{ id: 'e', source: 't', time: new Date().toISOString(), attempt: 1, body: { ms }, meta: {} }])
  const run = async (lease: Awaited<ReturnType<Scheduler['acquire']>>, ms: number) => (await lease.run(batch(ms), `inv-${Math.random()}`)).payload.value

  // Two v1 instances: one left idle, one busy with a long batch when the code changes.
  const idle = await scheduler.acquire('f')
  const busy = await scheduler.acquire('f')
  expect(await run(idle, 0)).toBe('v1')
  idle.release()
  const longRun = run(busy, 1500)
  expect(scheduler.versions('f')).toEqual({ [v1.hash]: 2 })

  expect(busy.isCurrent()).toBe(true)
  pool.registerCode(v2.hash, v2.code)
  scheduler.update({ ...spec, hash: v2.hash })
  // The router checks this before it forms a batch on a lease it held: no new batch on v1.
  expect(busy.isCurrent()).toBe(false)
  // The idle v1 instance is gone at once; the busy one stays until its batch is done.
  expect(scheduler.versions('f')).toEqual({ [v1.hash]: 1 })

  const next = await scheduler.acquire('f')
  expect(next.isCurrent()).toBe(true)
  expect(await run(next, 0)).toBe('v2')
  expect(await longRun).toBe('v1')
  expect(pool.hasCode(v1.hash)).toBe(true)
  await waitFor(() => pool.info()[0]?.bundles === 2)
  busy.release()
  expect(scheduler.versions('f')).toEqual({ [v2.hash]: 1 })
  // No instance runs v1 any more: the pool lets its bundle go.
  expect(pool.hasCode(v1.hash)).toBe(false)
  expect(pool.hasCode(v2.hash)).toBe(true)
  // ...and so does the worker host (its pong says how many bundles it holds).
  await waitFor(() => pool.info()[0]?.bundles === 1)
  next.release()

  // Every later lease runs the new version, on the one v2 instance left idle.
  for (let i = 0; i < 3; i++) {
    const l = await scheduler.acquire('f')
    expect(await run(l, 0)).toBe('v2')
    l.release()
  }
  expect(scheduler.versions('f')).toEqual({ [v2.hash]: 1 })

  // A reload back to v1: the host gets the bundle again before its first new instance.
  pool.registerCode(v1.hash, v1.code)
  scheduler.update({ ...spec, hash: v1.hash })
  const back = await scheduler.acquire('f')
  expect(await run(back, 0)).toBe('v1')
  back.release()
  await waitFor(() => pool.info()[0]?.bundles === 1)
  expect(pool.hasCode(v2.hash)).toBe(false)
})
