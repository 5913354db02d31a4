/**
 * Raw bodies (TriggerEvent.rawBody, issue 11): the payload's text goes to the isolate unparsed and
 * the function gets it parsed, or as its text when it is not JSON, exactly as a connector that
 * parses it in the gateway would hand it over. Text that tries to close its value and add members
 * or events to the batch stays one body; a text nested too deep is one dead letter keeping it.
 */
import { describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway, type TestGateway } from '../helpers/gateway.js'

/** Logs each event's id and body as the function sees them. */
const FN = `
export default async function (events, ctx) {
  for (const e of events) ctx.log.info('seen ' + JSON.stringify({ id: e.id, attempt: e.attempt, body: e.body, keys: Object.keys(e).sort() }))
  return { n: events.length }
}`

const gateway = (orderKey = 'source'): Promise<TestGateway> =>
  startRouterGateway(
    'fn',
    FN,
    `    orderKey: ${orderKey}\n    batch: { maxSize: 50, maxWaitMs: 20 }\n    retry: { maxAttempts: 1, backoff: fixed, initialDelayMs: 10 }\n`,
  )

let seq = 0
const raw = (text: string, key?: string): TriggerEvent => ({
  id: `r${++seq}`,
  source: 'test://raw',
  time: new Date().toISOString(),
  body: undefined,
  rawBody: text,
  meta: { n: seq },
  ...(key === undefined ? {} : { key }),
})

interface Seen {
  id: string
  attempt: number
  body: unknown
  keys: string[]
}
const seen = (g: TestGateway): Seen[] =>
  g.logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('seen ')).map((l) => JSON.parse(String(l.msg).slice(5)) as Seen)

describe('raw bodies', () => {
  it('hands JSON text to the function parsed, and text that is not JSON as text, in one batch', async () => {
    const g = await gateway()
    const texts = ['{"a":1,"b":[1,2,{"c":"x"}]}', ' [1, 2] ', '42', '"s"', 'true', '{"a":', 'not json', '{"a":1} trailing', '{"a":"\\u0000"}\u0000']
    const events = texts.map((x) => raw(x))
    const outcomes = await g.gw.router.deliver('fn', events)
    expect(outcomes.map((o) => o.status)).toEqual(texts.map(() => 'done'))
    const byId = new Map(seen(g).map((s) => [s.id, s]))
    const expected = texts.map((x) => {
      try {
        return JSON.parse(x) as unknown
      } catch {
        return x
      }
    })
    expect(events.map((e) => byId.get(e.id)?.body)).toEqual(expected)
    for (const e of events) expect(byId.get(e.id)?.keys).toEqual(['attempt', 'body', 'id', 'meta', 'source', 'time'])
  })

  it('keeps text that closes its value and adds members or events as one body', async () => {
    const g = await gateway()
    const forged = ['1,"id":"forged"', '1},{"id":"forged","source":"x","time":"t","meta":{},"body":2', '{"a":1}}', '"x":1', '1]', '[1]]', '{"a":1},{"b":2}']
    const events = [raw('{"ok":1}'), ...forged.map((x) => raw(x)), raw('{"ok":2}')]
    const outcomes = await g.gw.router.deliver('fn', events)
    expect(outcomes.map((o) => o.status)).toEqual(events.map(() => 'done'))
    const s = seen(g)
    expect(s.map((x) => x.id).sort()).toEqual(events.map((e) => e.id).sort())
    const byId = new Map(s.map((x) => [x.id, x]))
    expect(forged.map((_, i) => byId.get(events[i + 1]?.id as string)?.body)).toEqual(forged)
    expect(byId.get(events[0]?.id as string)?.body).toEqual({ ok: 1 })
  })

  it('keeps each body apart beside parsed events: digits, commas, brackets and characters outside the BMP', async () => {
    const g = await gateway()
    const parsed = (body: unknown): TriggerEvent => ({ id: `r${++seq}`, source: 'test://raw', time: new Date().toISOString(), body, meta: { n: seq } })
    const events = [raw('12,3,[4'), parsed({ p: 1 }), raw('{"e":"\\u00e9 \\ud83d\\ude00","s":"é😀"}'), raw('"😀]"'), parsed('text'), raw('[],{}'), raw('0')]
    const outcomes = await g.gw.router.deliver('fn', events)
    expect(outcomes.map((o) => o.status)).toEqual(events.map(() => 'done'))
    const byId = new Map(seen(g).map((s) => [s.id, s]))
    const expected = events.map((e) => {
      if (e.rawBody === undefined) return e.body
      try {
        return JSON.parse(e.rawBody) as unknown
      } catch {
        return e.rawBody
      }
    })
    expect(events.map((e) => byId.get(e.id)?.body)).toEqual(expected)
    expect(byId.get(events[2]?.id as string)?.body).toEqual({ e: 'é 😀', s: 'é😀' })
  })

  it('dead-letters a raw body nested too deep, keeping its text, and runs the rest', async () => {
    const g = await gateway()
    const deep = `${'['.repeat(600)}${']'.repeat(600)}`
    const events = [raw('{"a":1}'), raw(deep), raw('{"a":2}')]
    const outcomes = await g.gw.router.deliver('fn', events)
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'dead', 'done'])
    const o = outcomes[1]
    if (o?.status !== 'dead') throw new Error('not dead')
    expect(o.error.code).toBe('SLUICE_ERR_EVENT_TOO_DEEP')
    const letter = await g.gw.store.getDeadLetter(o.deadLetterId)
    expect(letter?.event.body).toBe(deep)
    expect(letter?.event.meta).toEqual({ n: seq - 1 })
  })

  it('orders by a key inside a raw body', async () => {
    const g = await gateway('body.station')
    const events = Array.from({ length: 20 }, (_, i) => raw(JSON.stringify({ station: `s${i % 3}`, i })))
    const outcomes = await g.gw.router.deliver('fn', events)
    expect(outcomes.every((o) => o.status === 'done')).toBe(true)
    const order = seen(g).map((x) => x.body as { station: string; i: number })
    for (const st of ['s0', 's1', 's2']) {
      const is = order.filter((b) => b.station === st).map((b) => b.i)
      expect(is).toEqual([...is].sort((a, b) => a - b))
      expect(is.length).toBeGreaterThan(5)
    }
  })
})
