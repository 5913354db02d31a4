/**
 * Dead letters across two gateways sharing one PostgreSQL store (the local server, a fresh schema):
 * a letter written by one is listed by the other, and the same letter replayed on both at the same
 * moment runs once (the replay lease), on the instance that won; the other answers 409.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ErrorCode } from '../../src/errors.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { PG_URL, tempSchema } from '../store/pg.js'

/** Logs the events it got, after spinning a while: a replay that takes long enough to race. */
const SLOW_RECORDER = `export default async function (events: any[]) {
  const end = Date.now() + 1500
  while (Date.now() < end) { /* a slow replay */ }
  for (const e of events) console.log(JSON.stringify({ id: e.id, body: e.body }))
}
`

async function gateway(schema: string): Promise<TestGateway> {
  const t = await startGateway({
    store: `{ kind: postgres, url: "${PG_URL}", schema: ${schema} }`,
    // Each its own instance id: two under one id (the host name) would refuse to start.
    yaml: `instance: { id: dl-${randomBytes(4).toString('hex')} }\nfunctions:\n  work:\n    code: functions/work.ts\n    trigger: { http: { route: work, auth: anonymous } }\n`,
    files: { 'functions/work.ts': SLOW_RECORDER },
  })
  onTestFinished(() => t.stop())
  return t
}

const runs = (t: TestGateway) =>
  t.logs.lines.filter((l) => l.source === 'function' && l.function === 'work').map((l) => JSON.parse(String(l.msg)) as { id: string })

describe('dead letters across gateways sharing PostgreSQL', () => {
  it('lists a letter on every instance and replays it once when two instances replay it at once', async () => {
    const schema = tempSchema()
    const [a, b] = await Promise.all([gateway(schema), gateway(schema)])
    const id = await a.gw.store.putDeadLetter({
      function: 'work',
      event: { id: 'evt-1', source: 'amqp://q/jobs', time: new Date().toISOString(), body: { job: 7 }, meta: { queue: 'jobs', deliveryTag: 3 } },
      error: { code: 'SLUICE_ERR_FUNCTION_THREW' as ErrorCode, message: 'boom', retriable: true },
      attempts: 3,
      firstAttemptAt: new Date().toISOString(),
      failedAt: new Date().toISOString(),
    })
    const listed = (await (await fetch(`${b.url}/admin/dead-letters`)).json()) as { deadLetters?: Array<{ id: string }> } | Array<{ id: string }>
    expect(JSON.stringify(listed)).toContain(id)

    const replay = (t: TestGateway) =>
      fetch(`${t.url}/admin/dead-letters/${id}/replay`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    const pending = [replay(a), replay(b)]
    // While it runs, every instance sees the letter as being replayed.
    const during = await waitFor(async () => (await b.gw.store.getDeadLetter(id))?.replay, 20_000, 'the replay to show')
    expect(during.attempt).toBe(1)
    const answers = await Promise.all(pending)
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{ outcome?: { status: string }; error?: { code: string } }>
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 409])
    const won = bodies.find((x) => x.outcome)
    expect(won?.outcome?.status).toBe('done')
    expect(bodies.find((x) => !x.outcome)?.error?.code).toBe('SLUICE_ERR_DEAD_LETTER_REPLAYING')
    // It ran once, across both instances, and the letter is gone for both.
    expect([...runs(a), ...runs(b)].map((r) => r.id)).toEqual(['evt-1'])
    expect(await a.gw.store.getDeadLetter(id)).toBeUndefined()
    const again = await replay(b)
    expect(again.status).toBe(404)
  }, 90_000)

  it('reports the store in /admin/health', async () => {
    const schema = tempSchema()
    const a = await gateway(schema)
    const res = await fetch(`${a.url}/admin/health`)
    const body = (await res.json()) as { status: string; store?: { kind: string; up: boolean } }
    expect(res.status).toBe(200)
    expect(body.store).toMatchObject({ kind: 'postgres', up: true })
  })
})
