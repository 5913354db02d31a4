/**
 * Shared pieces of the MQTT connector tests: unique names, a publisher that resolves once the
 * broker confirmed, a recording function, and a gateway started from inline YAML that is stopped
 * when the test ends.
 */
import { randomBytes } from 'node:crypto'
import { connectAsync, type IClientOptions, type IClientPublishOptions } from 'mqtt'
import { onTestFinished } from 'vitest'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'

export const SYSTEM_BROKER = 'mqtt://127.0.0.1:1883'

/** A name no other test (or earlier run) uses: letters and digits, starting with a letter. */
export function uid(prefix = 't'): string {
  return `${prefix}${randomBytes(5).toString('hex')}`
}

/** Publishes each body as JSON (or as given when a string) and resolves once the broker confirmed all (QoS 1 by default). */
export async function publish(
  url: string,
  topic: string | ((i: number) => string),
  bodies: unknown[],
  opts: IClientPublishOptions & { protocolVersion?: 4 | 5 } = {},
): Promise<void> {
  const { protocolVersion = 5, ...pub } = opts
  const client = await connectAsync(url, { protocolVersion, reconnectPeriod: 0, clientId: uid('pub') })
  try {
    await Promise.all(
      bodies.map((b, i) =>
        client.publishAsync(typeof topic === 'string' ? topic : topic(i), typeof b === 'string' ? b : JSON.stringify(b), { qos: 1, ...pub }),
      ),
    )
  } finally {
    await client.endAsync()
  }
}

/** Removes a persistent session from a broker (connects with clean: true under its client id). */
export async function dropSession(url: string, clientId: string, protocolVersion: 4 | 5 = 5): Promise<void> {
  const opts: IClientOptions = { clientId, clean: true, protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 }
  try {
    const c = await connectAsync(url, opts)
    await c.endAsync()
  } catch {
    // the broker is gone: so is the session
  }
}

/**
 * A function that logs one `seen <json>` line per event (its invocation and batch size, n,
 * attempt, key, id, source, meta, body) and: busy-waits `sleepMs`; throws for `throw: true`; fails an event while
 * `attempt <= failAttempts`; writes `output` to the output named `out`.
 */
export const RECORDER = `
export default async function (events, ctx) {
  for (const e of events) {
    ctx.log.info('seen ' + JSON.stringify({ inv: ctx.invocationId, size: events.length, n: e.body && e.body.n, attempt: e.attempt, key: e.key, id: e.id, source: e.source, meta: e.meta, body: e.body }))
  }
  const failed = []
  for (const e of events) {
    if (e.body && e.body.sleepMs) { const end = Date.now() + e.body.sleepMs; while (Date.now() < end) {} }
    if (e.body && e.body.throw) throw new Error('poison ' + e.body.n)
    if (e.body && e.body.failAttempts && e.attempt <= e.body.failAttempts) failed.push(e.id)
    else if (e.body && e.body.output !== undefined) ctx.output('out', e.body.output)
  }
  return failed.length ? { failed } : { ok: true }
}`

export interface Seen {
  inv: string
  size: number
  n: number | undefined
  attempt: number
  key: string
  id: string
  source: string
  meta: Record<string, unknown>
  body: unknown
}

/** The event a log line of the recorder (of function `fn`) reports, if it is one. */
export function seenAt(line: Record<string, unknown>, fn = 'rec'): Seen | undefined {
  if (line.source !== 'function' || line.function !== fn || typeof line.msg !== 'string' || !line.msg.startsWith('seen ')) return undefined
  return JSON.parse(line.msg.slice(5)) as Seen
}

/** Every event the recorder logged, in order. */
export function seen(t: TestGateway, fn = 'rec'): Seen[] {
  return t.logs.lines.flatMap((l) => seenAt(l, fn) ?? [])
}

/** Every batch the recorder logged, in order. */
export function batches(t: TestGateway, fn = 'rec'): Seen[][] {
  const out = new Map<string, Seen[]>()
  for (const s of seen(t, fn)) out.set(s.inv, [...(out.get(s.inv) ?? []), s])
  return [...out.values()]
}

export const numbers = (t: TestGateway, fn = 'rec'): Set<number | undefined> => new Set(seen(t, fn).map((s) => s.n))

/**
 * Starts a gateway with `connections` (YAML lines under connections:, indented two spaces) and
 * one function `rec` running RECORDER with `trigger`, `batch` and `retry` (flow YAML) and `extra`
 * function lines (indented four spaces). Stopped when the test ends.
 */
export async function recGateway(opts: {
  connections: string
  trigger: string
  batch?: string
  retry?: string
  extra?: string
  dir?: string
  fn?: string
}): Promise<TestGateway> {
  const fn = opts.fn ?? 'rec'
  const batch = opts.batch ?? '{ maxSize: 50, maxWaitMs: 20 }'
  const retry = opts.retry ?? '{ maxAttempts: 5, backoff: fixed, initialDelayMs: 50 }'
  const t = await startGateway({
    ...(opts.dir ? { dir: opts.dir } : {}),
    yaml: `connections:\n${opts.connections}\nfunctions:\n  ${fn}:\n    code: functions/rec.js\n    trigger: ${opts.trigger}\n    batch: ${batch}\n    retry: ${retry}\n${opts.extra ?? ''}`,
    files: { 'functions/rec.js': RECORDER },
  })
  onTestFinished(() => t.stop())
  return t
}
