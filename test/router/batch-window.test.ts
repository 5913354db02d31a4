import { describe, expect, it } from 'vitest'
import { Delivery, Item, Lane } from '../../src/router/lane.js'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway } from '../helpers/gateway.js'

/**
 * batch.maxWaitMs is a batching window counted from the oldest ready event's arrival. A key's
 * events that queued while its last batch ran have waited already: when the key is free again
 * they go at once (found with bench:amqp, where a queue is one key and every leftover waited
 * another maxWaitMs for a full batch).
 */

const event = (id: string, key: string): TriggerEvent => ({ id, source: 'test://window', key, time: new Date().toISOString(), body: {}, meta: {} })

function item(id: string, key: string, enqueuedAt: number): Item {
  const it = new Item(event(id, key), new Delivery(1, () => {}, enqueuedAt, Date.now()), 0)
  it.key = key
  return it
}

describe('Lane.readySince', () => {
  // Arrival times in the past of performance.now(), which starts near 0 in a new worker.
  const ago = (ms: number) => performance.now() - ms

  it("is the arrival of a key's oldest leftover when the key unlocks, not the time of the unlock", () => {
    const lane = new Lane()
    lane.push(item('a1', 'k', ago(3000)))
    expect(lane.take(10, 1e9).map((i) => i.event.id)).toEqual(['a1'])
    // Queued behind the running batch (the key is locked): not ready yet.
    const a2 = item('a2', 'k', ago(2000))
    lane.push(a2)
    lane.push(item('a3', 'k', ago(1500)))
    expect(lane.readyCount).toBe(0)
    lane.unlock('k')
    expect(lane.readyCount).toBe(2)
    expect(lane.readySince).toBe(a2.enqueuedAt)
  })

  it('moves back to an older leftover when another key made the lane ready first', () => {
    const lane = new Lane()
    lane.push(item('a1', 'a', ago(3000)))
    lane.take(10, 1e9)
    const a2 = item('a2', 'a', ago(2000))
    lane.push(a2)
    const b1 = item('b1', 'b', ago(1000))
    lane.push(b1)
    // b1 made the lane ready (no earlier than its push)...
    expect(lane.readySince).toBeGreaterThan(b1.enqueuedAt - 1)
    lane.unlock('a')
    // ...and a's leftover, older, moves the window's start back to its arrival.
    expect(lane.readySince).toBe(a2.enqueuedAt)
  })
})

const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => e.id)))
  for (const e of events) if (e.body.sleepMs) { const end = Date.now() + e.body.sleepMs; while (Date.now() < end) {} }
  return { ok: true }
}`

describe('batch.maxWaitMs behind a running batch', () => {
  it("sends a key's events that waited behind its running batch as soon as it finishes", async () => {
    const g = await startRouterGateway('rec', RECORDER, '    batch: { maxSize: 5, maxWaitMs: 3000 }\n    scale: { min: 1, max: 1 }\n    timeoutMs: 30000\n')
    const ev = (id: string, body: Record<string, unknown> = {}): TriggerEvent => ({ ...event(id, 'k'), body })
    // A full batch runs for longer than maxWaitMs; three more events of its key queue behind it.
    const first = ['f1', 'f2', 'f3', 'f4', 'f5'].map((id, i) => ev(id, i === 0 ? { sleepMs: 3300 } : {}))
    const running = g.gw.router.deliver('rec', first)
    const queued = g.gw.router.deliver('rec', [ev('q1'), ev('q2'), ev('q3')])
    await running
    // The queued events waited more than maxWaitMs: they went when the key became free. A later
    // event (well inside a new window) is in a batch of its own; had the three waited for a full
    // batch once more (3 s), it would have joined them. Half the window apart: the freed key's
    // batch starts within milliseconds, so a loaded machine has 1.5 s of room either way.
    await new Promise((r) => setTimeout(r, 1500))
    const later = g.gw.router.deliver('rec', [ev('l1')])
    const outcomes = [...(await queued), ...(await later)]
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'done', 'done', 'done'])
    const seen = g.logs.lines
      .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
      .map((l) => JSON.parse((l.msg as string).slice(5)) as string[])
    expect(seen).toEqual([['f1', 'f2', 'f3', 'f4', 'f5'], ['q1', 'q2', 'q3'], ['l1']])
  }, 30_000)
})
