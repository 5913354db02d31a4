/**
 * Attempts a source counted before the event reached this router (a broker redelivering a message
 * after a gateway crash passes its delivery count as `attempt`): the router counts on from there
 * and dead-letters at once what has no attempt left, so a message that crashes the gateway cannot
 * loop forever.
 */
import { describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startRouterGateway, type TestGateway } from '../helpers/gateway.js'

const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => [e.id, e.attempt])))
  return { failed: events.filter((e) => e.body.fail).map((e) => e.id) }
}`

const ev = (id: string, attempt: number | undefined, body: Record<string, unknown> = {}): TriggerEvent => ({
  id,
  source: 'test://attempts',
  time: new Date().toISOString(),
  body,
  meta: {},
  ...(attempt === undefined ? {} : { attempt }),
})

function seen(g: TestGateway): Array<[string, number]> {
  return g.logs.lines
    .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
    .flatMap((l) => JSON.parse((l.msg as string).slice(5)) as Array<[string, number]>)
}

describe('router: attempts counted by the source', () => {
  it('continues from the attempt the source passes, within retry.maxAttempts', async () => {
    const t = await startRouterGateway('rec', RECORDER, '    retry: { maxAttempts: 4, backoff: fixed, initialDelayMs: 10 }\n')
    const outcomes = await t.gw.router.deliver('rec', [ev('fresh', undefined), ev('again', 3), ev('failing', 3, { fail: true }), ev('bogus', 0.5)])
    expect(outcomes.map((o) => o.status)).toEqual(['done', 'done', 'dead', 'done'])
    expect(seen(t).sort()).toEqual([
      ['again', 3],
      ['bogus', 1],
      ['failing', 3],
      ['failing', 4],
      ['fresh', 1],
    ])
    const [letter] = await t.gw.listDeadLetters({ function: 'rec' })
    expect(letter).toMatchObject({ attempts: 4, error: { code: 'SLUICE_ERR_FUNCTION_EVENT_FAILED' } })
    // The stored event is the source's event without the attempt: a replay starts afresh.
    expect(letter?.event.attempt).toBeUndefined()
  })

  it('dead-letters without running an event whose earlier attempts used up maxAttempts', async () => {
    const t = await startRouterGateway('rec', RECORDER, '    retry: { maxAttempts: 2 }\n')
    const [outcome] = await t.gw.router.deliver('rec', [ev('looping', 3)])
    expect(outcome).toMatchObject({ status: 'dead', error: { code: 'SLUICE_ERR_EVENT_REDELIVERY_LIMIT', retriable: false } })
    expect(seen(t)).toEqual([])
    const [letter] = await t.gw.listDeadLetters({ function: 'rec' })
    expect(letter).toMatchObject({ attempts: 2, event: { id: 'looping' } })
    const replay = await t.gw.replayDeadLetter(letter?.id as string)
    expect(replay.outcome).toEqual({ status: 'done' })
    expect(seen(t)).toEqual([['looping', 1]])
  })
})
