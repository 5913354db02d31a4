import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * A worker host starts each run on its own thread with a short budget (isolates.ts, issue 11). A
 * run that needs longer moves to isolated-vm's thread pool, from the start, with its full limits:
 * it still succeeds, keeps only the logs of the run that counted, and the other functions of the
 * host keep being served while it runs or spins.
 */
const FILES: Record<string, string> = {
  'functions/quick.js': `export default async (events) => ({ n: events.length })`,
  'functions/slow.js': `export default async (events, ctx) => {
    ctx.log('started')
    await null
    const end = Date.now() + 300
    let spins = 0
    while (Date.now() < end) spins++
    ctx.log('finished')
    return { n: events.length, spun: spins > 0 }
  }`,
  'functions/spin.js': `export default async () => { await null; for (;;) {} }`,
  'functions/deep.js': `export default async () => {
    const down = (n) => (n === 0 ? 0 : 1 + down(n - 1))
    let v = 0
    for (let i = 0; i < 8000; i++) v = [v]
    return { depth: down(20000), chars: JSON.stringify(v).length }
  }`,
}

const YAML = `functions:
  quick:
    code: functions/quick.js
    trigger: { http: { route: quick, auth: anonymous } }
  slow:
    code: functions/slow.js
    trigger: { http: { route: slow, auth: anonymous } }
    timeoutMs: 10000
  spin:
    code: functions/spin.js
    trigger: { http: { route: spin, auth: anonymous } }
    timeoutMs: 1500
  deep:
    code: functions/deep.js
    trigger: { http: { route: deep, auth: anonymous } }
`

describe('runs past the inline budget', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({ yaml: YAML, files: FILES })
  })
  afterAll(() => t.stop())

  const event = (): TriggerEvent => ({ id: 'e1', source: 'test', time: new Date().toISOString(), body: {}, meta: {} })
  const invoke = (name: string) => t.gw.invoke(name, [event()])

  it('a run that needs longer than the budget succeeds, with the logs of one run', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await invoke('slow')
      expect(r.ok).toBe(true)
      expect(r.value).toEqual({ n: 1, spun: true })
      expect(r.logs.map((l) => l.msg)).toEqual(['started', 'finished'])
    }
    const q = await invoke('quick')
    expect(q.value).toEqual({ n: 1 })
  })

  it('a run on the host thread has the stack of one on the pool: 20,000 frames, JSON.stringify 8,000 deep', async () => {
    // Node's default V8 limit on the main thread (984 KiB) overflows at ~10k frames; worker hosts
    // ask for more (pool.ts hostStackFlag), so a recursion does not fail only when it runs inline.
    for (let i = 0; i < 2; i++) {
      const r = await invoke('deep')
      expect(r.error).toBeUndefined()
      expect(r.value).toEqual({ depth: 20000, chars: 16001 })
    }
  })

  it('other functions of the host are served while one spins until its deadline', async () => {
    const order: string[] = []
    const spin = invoke('spin').then((r) => {
      order.push('spin')
      return r
    })
    const quick: Array<Promise<unknown>> = []
    for (let i = 0; i < 5; i++) quick.push(invoke('quick').then((r) => order.push(`quick:${r.ok}`)))
    await Promise.all(quick)
    const r = await spin
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe('SLUICE_ERR_FUNCTION_TIMEOUT')
    expect(order).toEqual(['quick:true', 'quick:true', 'quick:true', 'quick:true', 'quick:true', 'spin'])
  })
})
