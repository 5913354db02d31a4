/**
 * The crash-loop regression (issue 9), shared by the MQTT and AMQP tests: a gateway in its own
 * process (`sluice start`) is killed with SIGKILL, a poison message (a JSON array nested 5,000
 * deep, 10 KB) is queued at the broker while it is down, and the gateway is started again with the
 * poison waiting for it. Today's failure: the process died at every start.
 */
import { expect } from 'vitest'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir, waitFor } from '../helpers/gateway.js'

/** The poison: `[[[...]]]` 5,000 levels deep. */
export const DEEP_ARRAY = `${'['.repeat(5000)}${']'.repeat(5000)}`

/** Logs `seen <body JSON>` for every event. */
export const SEEN_FUNCTION = `export default async function (events, ctx) {
  for (const e of events) ctx.log.info('seen ' + JSON.stringify(e.body))
}`

export interface DeadLetterView {
  id: string
  error: { code: string; message: string }
  event: { id: string; body: unknown; meta: Record<string, unknown> }
}

/** A gateway project folder (removed by `cleanup`) with `fn` running SEEN_FUNCTION on `trigger`. */
export function poisonProject(connections: string, trigger: string, cleanup: (step: () => unknown) => void): GatewayProcess {
  const project = projectDir({
    'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: state.db }
connections:
${connections}
functions:
  fn:
    code: functions/fn.js
    trigger: ${trigger}
    batch: { maxSize: 10, maxWaitMs: 10 }
    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 50 }
`,
    'functions/fn.js': SEEN_FUNCTION,
  })
  cleanup(project.cleanup)
  const gp = new GatewayProcess(project.dir)
  cleanup(() => gp.kill())
  return gp
}

/** Bodies the function saw since log line `from`, as JSON text. */
export function seenSince(gp: GatewayProcess, from = 0): string[] {
  return gp.lines
    .slice(from)
    .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
    .map((l) => (l.msg as string).slice(5))
}

/** Dead letters of `fn` at the running gateway; throws when the gateway process has exited. */
export async function deadLetters(gp: GatewayProcess): Promise<DeadLetterView[]> {
  alive(gp)
  const res = await fetch(`${gp.url}/admin/dead-letters?function=fn&limit=100`)
  if (!res.ok) throw new Error(`GET /admin/dead-letters answered ${res.status}: ${await res.text()}`)
  return ((await res.json()) as { items: DeadLetterView[] }).items
}

/** Throws (ending a waitFor at once) when the gateway process is gone. */
export function alive(gp: GatewayProcess): void {
  const c = gp.child
  if (!c || c.exitCode !== null || c.signalCode !== null) {
    const last = gp.lines
      .slice(-5)
      .map((l) => JSON.stringify(l))
      .join('\n')
    throw new Error(`the gateway exited (code ${c?.exitCode}, signal ${c?.signalCode}); last log lines:\n${last}`)
  }
}

/**
 * The scenario after the poison (and `{ n: 1 }` behind it) was queued while the gateway was down:
 * start, the poison is dead-lettered once with SLUICE_ERR_EVENT_TOO_DEEP and its raw text while
 * the message behind it is processed; a graceful stop and another start, and a marker published
 * then is processed with no second letter (so the poison was acknowledged at the source).
 */
export async function expectSurvivesPoison(gp: GatewayProcess, publishMarker: () => Promise<void>): Promise<void> {
  await gp.start()
  await waitFor(
    async () => (await deadLetters(gp)).length === 1 && seenSince(gp).includes('{"n":1}'),
    30_000,
    'the poison dead-lettered and the next message processed',
  )
  const [letter] = await deadLetters(gp)
  expect(letter?.error.code).toBe('SLUICE_ERR_EVENT_TOO_DEEP')
  expect(letter?.event.body).toBe(DEEP_ARRAY)
  expect(seenSince(gp).filter((s) => s.startsWith('['))).toEqual([])
  alive(gp)
  expect(await gp.stop()).toBe(0)

  await gp.start()
  const mark = gp.lines.length
  await publishMarker()
  await waitFor(
    () => {
      alive(gp)
      return seenSince(gp, mark).includes('{"marker":true}')
    },
    30_000,
    'the marker processed after a restart',
  )
  expect(await deadLetters(gp)).toHaveLength(1)
  expect(gp.lines.slice(mark).filter((l) => l.msg === 'event dead-lettered')).toEqual([])
}
