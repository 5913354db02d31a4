/**
 * Admission of large `deliver` calls (issue 11): a call of more than a slice of events is admitted
 * a slice per turn of the event loop, so its first batches run meanwhile; the call counts towards
 * the backlog at once, later calls wait behind it (a key's order holds), and events not admitted
 * when the function stops are answered `aborted`.
 */
import { describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway, type TestGateway } from '../helpers/gateway.js'

const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => e.id)))
  return { n: events.length }
}`

const gateway = (fnYaml = ''): Promise<TestGateway> => startRouterGateway('rec', RECORDER, `    batch: { maxSize: 100, maxWaitMs: 5 }\n${fnYaml}`)

let seq = 0
const events = (n: number, key: string): TriggerEvent[] =>
  Array.from({ length: n }, () => ({ id: `a${++seq}`, source: 'test://admission', time: new Date().toISOString(), key, body: { n: seq }, meta: {} }))

const seenIds = (g: TestGateway): string[] =>
  g.logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('seen ')).flatMap((l) => JSON.parse(String(l.msg).slice(5)) as string[])

describe('admission of large deliveries', () => {
  it('admits a large call in slices, counts it in the backlog at once, and keeps a key in order across calls', async () => {
    const g = await gateway('    maxBacklog: 20000')
    const big = events(3500, 'k')
    const small = events(5, 'k')
    const first = g.gw.router.deliver('rec', big)
    const second = g.gw.router.deliver('rec', small)
    const now = g.gw.router.stats('rec')
    expect(now.backlog).toBe(3505)
    // Only the first slice is queued yet: the rest is admitted over the next turns.
    expect(now.ready).toBeLessThanOrEqual(1000)
    const [a, b] = await Promise.all([first, second])
    expect([...a, ...b].every((o) => o.status === 'done')).toBe(true)
    expect(seenIds(g)).toEqual([...big, ...small].map((e) => e.id))
    expect(g.gw.router.stats('rec').backlog).toBe(0)
  })

  it('admits a backlog only a few thousand events ahead of what finished', async () => {
    const g = await gateway('    maxBacklog: 50000\n    orderKey: none\n    scale: { max: 2 }')
    const done = g.gw.router.deliver('rec', events(20000, 'k'))
    // The first slice is queued at once; the samples below watch the rest of the drain.
    let most = g.gw.router.stats('rec').ready
    const watch = setInterval(() => {
      const s = g.gw.router.stats('rec')
      most = Math.max(most, s.ready)
    }, 1)
    const outcomes = await done
    clearInterval(watch)
    expect(outcomes.every((o) => o.status === 'done')).toBe(true)
    // At most 4,000 admitted and not final (2 x 100 x scale.max is less): the ready queue never holds more.
    expect(most).toBeGreaterThan(0)
    expect(most).toBeLessThanOrEqual(4000)
  })

  it('pauses the source flow for a large call before it is admitted', async () => {
    const g = await gateway('    maxBacklog: 2000')
    const done = g.gw.router.deliver('rec', events(3000, 'k'))
    expect(g.gw.router.flow('rec').paused).toBe(true)
    expect((await done).every((o) => o.status === 'done')).toBe(true)
    expect(g.gw.router.flow('rec').paused).toBe(false)
  })

  it('answers events not admitted yet aborted when the router closes, and every other event once', async () => {
    const g = await gateway('    maxBacklog: 20000')
    const big = events(6000, 'k')
    const outcomes = g.gw.router.deliver('rec', big)
    await new Promise((r) => setImmediate(r))
    await g.gw.router.close()
    const all = await outcomes
    expect(all).toHaveLength(6000)
    const aborted = all.filter((o) => o.status === 'aborted').length
    const done = all.filter((o) => o.status === 'done').length
    expect(aborted + done).toBe(6000)
    expect(aborted).toBeGreaterThan(0)
    // What ran is a prefix of the key's events, in order, each once.
    const seen = seenIds(g)
    expect(seen).toEqual(big.slice(0, seen.length).map((e) => e.id))
    expect(seen.length).toBe(done)
  })
})
