import { describe, expect, it } from 'vitest'
import type { Outcome, TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/**
 * Router semantics through a real gateway: the function logs what it saw as JSON lines
 * (`seen [[id, attempt, key], ...]`), which the test reads back from the gateway's log stream.
 */
const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => [e.id, e.attempt, e.key ?? null])))
  const failed = []
  for (const e of events) {
    if (e.body.sleepMs) { const end = Date.now() + e.body.sleepMs; while (Date.now() < end) {} }
    if (e.body.throwAll) throw new Error('batch failed on ' + e.id)
    if (e.body.failUntilAttempt && e.attempt < e.body.failUntilAttempt) failed.push(e.id)
  }
  return failed.length ? { failed } : { ok: true }
}`

const gateway = (fnYaml: string): Promise<TestGateway> => startRouterGateway('rec', RECORDER, fnYaml)

let seq = 0
const ev = (body: Record<string, unknown> = {}, key?: string): TriggerEvent => ({
  id: `e${++seq}`,
  source: 'test://router',
  time: new Date().toISOString(),
  body,
  meta: { n: seq },
  ...(key !== undefined ? { key } : {}),
})

/** Batches the function saw, in order: arrays of [id, attempt, key]. */
function batches(g: TestGateway): Array<Array<[string, number, string | null]>> {
  return g.logs.lines
    .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
    .map((l) => JSON.parse((l.msg as string).slice(5)) as Array<[string, number, string | null]>)
}

describe('router', () => {
  it('batches by maxSize and delivers every event once', async () => {
    const g = await gateway('    batch: { maxSize: 10, maxWaitMs: 50 }\n    orderKey: none\n    scale: { max: 2 }')
    const events = Array.from({ length: 25 }, () => ev())
    const outcomes = await g.gw.router.deliver('rec', events)
    expect(outcomes.every((o) => o.status === 'done')).toBe(true)
    const seen = batches(g)
    expect(Math.max(...seen.map((b) => b.length))).toBeLessThanOrEqual(10)
    expect(
      seen
        .flat()
        .map((x) => x[0])
        .sort(),
    ).toEqual(events.map((e) => e.id).sort())
  })

  it('waits up to maxWaitMs to fill a batch', async () => {
    const g = await gateway('    batch: { maxSize: 100, maxWaitMs: 300 }\n    scale: { min: 1, max: 1 }')
    const a = g.gw.router.deliver('rec', [ev({}, 'k1')])
    await new Promise((r) => setTimeout(r, 50))
    const b = g.gw.router.deliver('rec', [ev({}, 'k2'), ev({}, 'k3')])
    await Promise.all([a, b])
    expect(batches(g).map((x) => x.length)).toEqual([3])
  })

  it('keeps order per key while other keys run in parallel', async () => {
    const g = await gateway('    batch: { maxSize: 3, maxWaitMs: 0 }\n    scale: { max: 4 }')
    const slow = Array.from({ length: 6 }, () => ev({ sleepMs: 150 }, 'slow'))
    const fast = Array.from({ length: 6 }, () => ev({}, 'fast'))
    const done: string[] = []
    const track = (key: string, p: Promise<unknown>) => p.then(() => done.push(key))
    await Promise.all([track('slow', g.gw.router.deliver('rec', slow)), track('fast', g.gw.router.deliver('rec', fast))])
    // The fast key did not wait for the slow one.
    expect(done).toEqual(['fast', 'slow'])
    const order = (key: string) =>
      batches(g)
        .flat()
        .filter((x) => x[2] === key)
        .map((x) => x[0])
    expect(order('slow')).toEqual(slow.map((e) => e.id))
    expect(order('fast')).toEqual(fast.map((e) => e.id))
  })

  it('retries only the events a batch reports as failed, keeping their key in order', async () => {
    const g = await gateway(
      '    batch: { maxSize: 10, maxWaitMs: 20 }\n    retry: { maxAttempts: 5, backoff: fixed, initialDelayMs: 50 }\n    scale: { max: 1 }',
    )
    const events = [ev({}, 'a'), ev({ failUntilAttempt: 3 }, 'a'), ev({}, 'b')]
    const outcomes = await g.gw.router.deliver('rec', events)
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'done', 'done'])
    const seen = batches(g).flat()
    const attemptsOf = (id: string) => seen.filter((x) => x[0] === id).map((x) => x[1])
    expect(attemptsOf(events[0]!.id)).toEqual([1])
    expect(attemptsOf(events[1]!.id)).toEqual([1, 2, 3])
    expect(attemptsOf(events[2]!.id)).toEqual([1])
  })

  it('a failing key holds back its own later events, not other keys', async () => {
    const g = await gateway(
      '    batch: { maxSize: 1, maxWaitMs: 0 }\n    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 200 }\n    scale: { max: 2 }',
    )
    const bad = ev({ failUntilAttempt: 2 }, 'k')
    const after = ev({}, 'k')
    const other = ev({}, 'other')
    await Promise.all([g.gw.router.deliver('rec', [bad, after]), g.gw.router.deliver('rec', [other])])
    const ids = batches(g)
      .flat()
      .map((x) => `${x[0]}#${x[1]}`)
    // The later event of key k ran only after the retry of the failed one succeeded.
    expect(ids.indexOf(`${after.id}#1`)).toBeGreaterThan(ids.indexOf(`${bad.id}#2`))
    // The other key did not wait for the retry.
    expect(ids.indexOf(`${other.id}#1`)).toBeLessThan(ids.indexOf(`${bad.id}#2`))
  })

  it('dead-letters after the last attempt, with payload, error and attempts, and replays', async () => {
    const g = await gateway('    retry: { maxAttempts: 3, backoff: exponential, initialDelayMs: 10, maxDelayMs: 40 }')
    const bad = ev({ throwAll: true, station: 'st-007' }, 'x')
    const [outcome] = await g.gw.router.deliver('rec', [bad])
    expect(outcome?.status).toBe('dead')
    if (outcome?.status !== 'dead') return
    expect(outcome.error.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(
      batches(g)
        .flat()
        .filter((x) => x[0] === bad.id)
        .map((x) => x[1]),
    ).toEqual([1, 2, 3])
    const dl = await g.gw.store.getDeadLetter(outcome.deadLetterId)
    expect(dl).toMatchObject({ function: 'rec', attempts: 3, event: { id: bad.id, body: { station: 'st-007' }, source: 'test://router', meta: bad.meta } })
    expect(dl?.error.message).toMatch(/batch failed on/)
    // Replay delivers the stored event again: it still fails, so it is dead-lettered anew.
    const again = await g.gw.replayDeadLetter(outcome.deadLetterId)
    expect(again.outcome.status).toBe('dead')
    expect(await g.gw.store.getDeadLetter(outcome.deadLetterId)).toBeUndefined()
    expect(await g.gw.store.countDeadLetters('rec')).toBe(1)
  })

  it("runs a key's later events once its failed event is dead-lettered, with nothing else arriving", async () => {
    const g = await gateway('    batch: { maxSize: 1, maxWaitMs: 0 }\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 10 }')
    const bad = ev({ throwAll: true }, 'k')
    const after = [ev({}, 'k'), ev({}, 'k')]
    // One deliver call, no later events: only the dead-letter write can let the key go on.
    const outcomes = await g.gw.router.deliver('rec', [bad, ...after])
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'done', 'done'])
  })

  it('dead-letters events that are not JSON data at once', async () => {
    const g = await gateway('')
    const bad = { ...ev(), body: { n: 1n } } as unknown as TriggerEvent
    const [outcome] = await g.gw.router.deliver('rec', [bad])
    expect(outcome).toMatchObject({ status: 'dead', error: { code: 'SLUICE_ERR_EVENT_INVALID' } })
  })

  it('pauses the flow when the backlog reaches maxBacklog and resumes when it drains', async () => {
    const g = await gateway('    maxBacklog: 20\n    batch: { maxSize: 5, maxWaitMs: 0 }\n    scale: { max: 1 }')
    const flow = g.gw.router.flow('rec')
    const changes: boolean[] = []
    flow.onChange((p) => changes.push(p))
    const all = g.gw.router.deliver(
      'rec',
      Array.from({ length: 40 }, () => ev({ sleepMs: 5 })),
    )
    expect(flow.paused).toBe(true)
    await flow.wait()
    expect(flow.paused).toBe(false)
    await all
    expect(changes[0]).toBe(true)
    expect(changes).toContain(false)
  })

  it('on close, finishes in-flight batches and answers queued events aborted', async () => {
    const g = await gateway('    batch: { maxSize: 1, maxWaitMs: 0 }\n    scale: { max: 1 }')
    const p = g.gw.router.deliver('rec', [ev({ sleepMs: 300 }, 'a'), ev({}, 'b'), ev({}, 'c')])
    await waitFor(() => batches(g).length > 0 || g.gw.router.stats('rec').inflight > 0, 5000, 'first batch to start')
    await g.gw.router.close(5000)
    const outcomes = await p
    expect(outcomes[0]?.status).toBe('done')
    expect(outcomes.slice(1).every((o) => o.status === 'aborted' || o.status === 'done')).toBe(true)
    expect(outcomes.some((o) => o.status === 'aborted')).toBe(true)
    expect((await g.gw.router.deliver('rec', [ev()]))[0]?.status).toBe('aborted')
  })
  it('reports each outcome to onOutcome once, as it becomes durable, before the call resolves', async () => {
    const g = await gateway(
      '    batch: { maxSize: 1, maxWaitMs: 0 }\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 800 }\n    scale: { max: 2 }',
    )
    const events = [ev({ failUntilAttempt: 2 }, 'a'), ev({}, 'b'), ev({ throwAll: true }, 'c')]
    const heard: Array<[number, Outcome, boolean]> = []
    let resolved = false
    const p = g.gw.router.deliver('rec', events, (i, o) => heard.push([i, o, resolved]))
    // The event without a retry is reported while the others still wait for theirs.
    await waitFor(() => heard.length === 1, 5000, 'first outcome')
    expect(heard[0]?.[0]).toBe(1)
    expect(heard[0]?.[1].status).toBe('done')
    const outcomes = await p.then((o) => {
      resolved = true
      return o
    })
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'done', 'dead'])
    expect(heard.map((h) => h[0]).sort()).toEqual([0, 1, 2])
    for (const [i, o, after] of heard) {
      expect(o).toBe(outcomes[i])
      expect(after).toBe(false)
    }
    // A listener that throws is logged; the call still resolves, once per event.
    let calls = 0
    const both = await g.gw.router.deliver('rec', [ev(), ev()], () => {
      calls++
      throw new Error('listener bug')
    })
    expect(both.map((o) => o.status)).toEqual(['done', 'done'])
    expect(calls).toBe(2)
    // After close, every event is answered aborted, through the listener too.
    await g.gw.router.close(5000)
    const late: Array<[number, string]> = []
    const aborted = await g.gw.router.deliver('rec', [ev(), ev()], (i, o) => late.push([i, o.status]))
    expect(aborted.map((o) => o.status)).toEqual(['aborted', 'aborted'])
    expect(late).toEqual([
      [0, 'aborted'],
      [1, 'aborted'],
    ])
  })
})
