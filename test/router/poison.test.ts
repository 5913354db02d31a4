/**
 * Hostile events and hostile results through a real gateway (worker host, isolates, SQLite store):
 * nothing an event or a function's return value holds may throw out of the router's event path
 * (which crashed the process with an unhandled rejection, issue 9). Each case ends in exactly one
 * outcome, and events delivered alongside keep flowing.
 */
import { describe, expect, it } from 'vitest'
import type { Outcome, TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway, type TestGateway } from '../helpers/gateway.js'

/** Returns what the event asks for: a value nested body.deepReturn levels, or { failed } with reasons. */
const FN = `
export default async function (events, ctx) {
  const failed = []
  let value = { ok: true }
  for (const e of events) {
    const b = e.body !== null && typeof e.body === 'object' && !Array.isArray(e.body) ? e.body : {}
    ctx.log.info('seen ' + e.id)
    if (b.deepReturn) { let v = []; for (let i = 0; i < b.deepReturn; i++) v = [v]; value = v }
    if (b.failWith) failed.push({ id: e.id, reason: b.failWith })
    if (b.failPlain) failed.push(e.id)
  }
  return failed.length ? { failed } : value
}`

const gateway = (extra = ''): Promise<TestGateway> =>
  startRouterGateway('fn', FN, `    batch: { maxSize: 10, maxWaitMs: 5 }\n    retry: { maxAttempts: 1, backoff: fixed, initialDelayMs: 10 }\n${extra}`)

let seq = 0
const ev = (body: unknown, key?: string): TriggerEvent => ({
  id: `p${++seq}`,
  source: 'test://poison',
  time: new Date().toISOString(),
  body,
  meta: {},
  ...(key === undefined ? {} : { key }),
})

/** A value nested `depth` levels: arrays, or objects { a: ... }. */
function nested(depth: number, kind: 'array' | 'object'): unknown {
  let v: unknown = 0
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v }
  return v
}

const seenIds = (g: TestGateway) => g.logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('seen ')).map((l) => String(l.msg).slice(5))

async function letterOf(g: TestGateway, o: Outcome | undefined) {
  expect(o?.status).toBe('dead')
  if (o?.status !== 'dead') throw new Error('not dead')
  const dl = await g.gw.store.getDeadLetter(o.deadLetterId)
  if (!dl) throw new Error('no letter')
  return dl
}

describe('router: hostile events', () => {
  it.each(['array', 'object'] as const)(
    'dead-letters an event whose body is %s nesting 5,000 deep, keeping it as JSON text, and the rest flows',
    async (kind) => {
      const g = await gateway()
      const events = [ev({ n: 1 }, 'k'), ev(nested(5000, kind), 'k'), ev({ n: 3 }, 'k')]
      const outcomes = await g.gw.router.deliver('fn', events)
      expect(outcomes.map((o) => o.status)).toEqual(['done', 'dead', 'done'])
      const dl = await letterOf(g, outcomes[1])
      expect(dl.error.code).toBe('SLUICE_ERR_EVENT_TOO_DEEP')
      expect(dl.error.message).toMatch(/nest/)
      expect(dl.event.id).toBe(events[1]?.id)
      // The payload survives as text; the meta says so.
      const text = kind === 'array' ? `${'['.repeat(5000)}0${']'.repeat(5000)}` : `${'{"a":'.repeat(5000)}0${'}'.repeat(5000)}`
      expect(dl.event.body).toBe(text)
      expect(dl.event.meta.bodyEncoding).toBe('json-text')
      expect(seenIds(g).sort()).toEqual([events[0]?.id, events[2]?.id].sort())
      expect(g.gw.function('fn')?.counts).toMatchObject({ eventsDone: 2, eventsDead: 1 })
    },
  )

  it('dead-letters an event that nests just past the depth limit but passes one inside it', async () => {
    const g = await gateway()
    const outcomes = await g.gw.router.deliver('fn', [ev(nested(510, 'array')), ev(nested(600, 'object'))])
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'dead'])
    expect((await letterOf(g, outcomes[1])).error.code).toBe('SLUICE_ERR_EVENT_TOO_DEEP')
  })

  it('dead-letters an event larger than the event limit with SLUICE_ERR_EVENT_TOO_LARGE, keeping its body', async () => {
    const g = await gateway()
    const big = 'x'.repeat(7 * 1024 * 1024)
    const outcomes = await g.gw.router.deliver('fn', [ev({ big }), ev({ n: 2 })])
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'done'])
    const dl = await letterOf(g, outcomes[0])
    expect(dl.error.code).toBe('SLUICE_ERR_EVENT_TOO_LARGE')
    expect(dl.event.body).toEqual({ big })
  })

  it('dead-letters a source-rejected event at once with its own code, raw body and no function run', async () => {
    const g = await gateway()
    const rejected: TriggerEvent = {
      ...ev('[[[[ raw text'),
      meta: { encoding: 'text' },
      rejected: { code: 'SLUICE_ERR_EVENT_TOO_DEEP', message: 'the payload nests 9000 levels; the limit is 512', retriable: false },
    }
    const outcomes = await g.gw.router.deliver('fn', [rejected])
    const dl = await letterOf(g, outcomes[0])
    expect(dl.error).toMatchObject({ code: 'SLUICE_ERR_EVENT_TOO_DEEP', message: 'the payload nests 9000 levels; the limit is 512' })
    expect(dl.event.body).toBe('[[[[ raw text')
    expect(dl.event).not.toHaveProperty('rejected')
    expect(seenIds(g)).toEqual([])
  })

  it('keeps events with hostile keys and meta storable: a BigInt in meta and a cyclic body are dead-lettered, not thrown', async () => {
    const g = await gateway()
    const cyclic: Record<string, unknown> = { n: 1 }
    cyclic.self = cyclic
    const bigMeta: TriggerEvent = { ...ev({ n: 2 }), meta: { big: 10n } }
    const deepMeta: TriggerEvent = { ...ev({ n: 3 }), meta: { m: nested(5000, 'object') } }
    const outcomes = await g.gw.router.deliver('fn', [ev(cyclic), bigMeta, deepMeta, ev({ n: 4 })])
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'dead', 'dead', 'done'])
    const codes = await Promise.all(outcomes.slice(0, 3).map(async (o) => (await letterOf(g, o)).error.code))
    expect(codes).toEqual(['SLUICE_ERR_EVENT_INVALID', 'SLUICE_ERR_EVENT_INVALID', 'SLUICE_ERR_EVENT_TOO_DEEP'])
  })
})

describe('router: hostile results', () => {
  it('a batch function that returns a value nested 5,000 deep finishes its events, with a bounded preview', async () => {
    const g = await gateway()
    const outcomes = await g.gw.router.deliver('fn', [ev({ deepReturn: 5000 }), ev({ n: 2 })])
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'done'])
    const [rec] = g.gw.function('fn')?.recent ?? []
    expect(rec?.ok).toBe(true)
    expect(typeof rec?.result).toBe('string')
    expect((rec?.result as string).length).toBeLessThan(4096)
    // The gateway still runs batches afterwards.
    expect(await g.gw.router.deliver('fn', [ev({ n: 3 })])).toEqual([{ status: 'done' }])
  })

  it('a synchronous invocation returning a value nested 5,000 deep answers SLUICE_ERR_FUNCTION_RESULT_INVALID and is recorded', async () => {
    const g = await gateway()
    const r = await g.gw.router.invoke('fn', [ev({ deepReturn: 5000 })])
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe('SLUICE_ERR_FUNCTION_RESULT_INVALID')
    expect(g.gw.function('fn')?.recent[0]?.ok).toBe(false)
    // A value within the limit is answered.
    expect((await g.gw.router.invoke('fn', [ev({ deepReturn: 100 })])).ok).toBe(true)
  })

  it('a synchronous invocation of an event nested 5,000 deep is refused with SLUICE_ERR_EVENT_TOO_DEEP', async () => {
    const g = await gateway()
    await expect(g.gw.router.invoke('fn', [ev(nested(5000, 'array'))])).rejects.toMatchObject({ code: 'SLUICE_ERR_EVENT_TOO_DEEP' })
  })

  it('{ failed: [{ id, reason }] } retries those events and puts the reason in the dead letter', async () => {
    const g = await gateway()
    const outcomes = await g.gw.router.deliver('fn', [ev({ failWith: 'station 17 unknown' }), ev({ failPlain: true }), ev({ n: 3 })])
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'dead', 'done'])
    const withReason = await letterOf(g, outcomes[0])
    expect(withReason.error.code).toBe('SLUICE_ERR_FUNCTION_EVENT_FAILED')
    expect(withReason.error.message).toMatch(/station 17 unknown/)
    const plain = await letterOf(g, outcomes[1])
    expect(plain.error.code).toBe('SLUICE_ERR_FUNCTION_EVENT_FAILED')
  })

  it("counts a synchronous invocation's events in eventsDone and eventsDead", async () => {
    const g = await gateway()
    await g.gw.router.invoke('fn', [ev({ n: 1 }), ev({ n: 2 })])
    expect(g.gw.function('fn')?.counts).toMatchObject({ events: 2, eventsDone: 2, eventsDead: 0 })
    await g.gw.router.invoke('fn', [ev({ failWith: 'no' })])
    expect(g.gw.function('fn')?.counts).toMatchObject({ events: 3, eventsDone: 2, eventsDead: 0, failures: 0 })
  })
})
