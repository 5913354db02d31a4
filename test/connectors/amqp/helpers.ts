import { afterEach } from 'vitest'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { Client, queueCounts, RABBIT_URL, unique } from './broker.js'

/**
 * The function the AMQP tests run. It logs `seen [...]` with what it received (the tests read the
 * gateway's log), and its behaviour comes from each message body:
 * failAttempts: N (fail attempts 1..N), failAlways, spinMs (busy for that long), output: value
 * (written to output `out`), dump (log the whole event).
 */
export const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => {
    const b = e.body && typeof e.body === 'object' ? e.body : {}
    return b.dump ? { n: b.n ?? null, attempt: e.attempt, id: e.id, event: e } : { n: b.n ?? null, attempt: e.attempt, id: e.id, dc: e.meta.deliveryCount, red: e.meta.redelivered }
  })))
  const failed = []
  for (const e of events) {
    const b = e.body && typeof e.body === 'object' ? e.body : {}
    if (b.failAlways || (b.failAttempts && e.attempt <= b.failAttempts)) failed.push(e.id)
    if (b.spinMs) { const end = Date.now() + b.spinMs; while (Date.now() < end) {} }
    if (b.output !== undefined) ctx.output('out', b.output)
  }
  return failed.length ? { failed } : { ok: true }
}`

export interface Seen {
  n: number | null
  attempt: number
  id: string
  dc?: number
  red?: boolean
  event?: { id: string; source: string; key?: string; time: string; body: unknown; meta: Record<string, unknown> }
}

export function seenIn(lines: Array<Record<string, unknown>>): Seen[] {
  return lines
    .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
    .flatMap((l) => JSON.parse((l.msg as string).slice(5)) as Seen[])
}

export const seen = (t: TestGateway): Seen[] => seenIn(t.logs.lines)
export const numbers = (t: TestGateway): Set<number | null> => new Set(seen(t).map((s) => s.n))

/** Per-test resources, released after the test in reverse order. */
const cleanups: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c()
    } catch (e) {
      console.warn('cleanup failed:', (e as Error).message)
    }
  }
})

export function onCleanup(fn: () => Promise<unknown> | unknown): void {
  cleanups.push(fn)
}

/** A client on `url` closed after the test. */
export async function client(url = RABBIT_URL): Promise<Client> {
  const c = await Client.open(url)
  onCleanup(() => c.close())
  return c
}

/** A queue (declared durable unless `declare` is false) deleted after the test. */
export async function tempQueue(prefix = 'amqp-test', opts: { declare?: boolean; url?: string; args?: Record<string, unknown> } = {}): Promise<string> {
  const queue = unique(prefix)
  const c = await client(opts.url)
  if (opts.declare !== false) await c.ch.assertQueue(queue, { durable: true, ...(opts.args ? { arguments: opts.args } : {}) })
  onCleanup(async () => {
    const d = await Client.open(opts.url)
    await d.ch.deleteQueue(queue).catch(() => undefined)
    await d.close()
  })
  return queue
}

/** An exchange deleted after the test (declared here unless `declare` is false). */
export async function tempExchange(prefix = 'amqp-test-x', opts: { declare?: boolean; type?: string; url?: string } = {}): Promise<string> {
  const exchange = unique(prefix)
  const c = await client(opts.url)
  if (opts.declare !== false) await c.ch.assertExchange(exchange, opts.type ?? 'topic', { durable: true })
  onCleanup(async () => {
    const d = await Client.open(opts.url)
    await d.ch.deleteExchange(exchange).catch(() => undefined)
    await d.close()
  })
  return exchange
}

export interface AmqpGatewayOptions {
  /** Trigger options after `connection:` (flow YAML body), e.g. `queue: q1, prefetch: 10`. */
  trigger: string
  /** Extra function keys (YAML lines indented four spaces). */
  fn?: string
  /** Extra connection keys, e.g. `heartbeatSeconds: 3`. */
  connection?: string
  url?: string
  dir?: string
}

/**
 * A gateway with one AMQP connection (named uniquely, so the broker shows its connections as
 * `sluice/<connection>/rec`) and the RECORDER function `rec`; stopped after the test.
 */
export async function amqpGateway(o: AmqpGatewayOptions): Promise<TestGateway & { connection: string }> {
  const connection = unique('c').replace(/-/g, '_')
  const extra = o.connection ? `, ${o.connection}` : ''
  const t = await startGateway({
    ...(o.dir ? { dir: o.dir } : {}),
    yaml: `connections:
  ${connection}: { kind: amqp, url: "${o.url ?? RABBIT_URL}"${o.connection?.includes('reconnect:') ? '' : ', reconnect: { initialDelayMs: 100, maxDelayMs: 1000 }'}${extra} }
functions:
  rec:
    code: functions/rec.js
    trigger: { amqp: { connection: ${connection}, ${o.trigger} } }
${o.fn?.includes('batch:') ? '' : '    batch: { maxSize: 50, maxWaitMs: 10 }\n'}${o.fn ?? '    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 50 }\n'}`.replaceAll(
      '$CONN',
      connection,
    ),
    files: { 'functions/rec.js': RECORDER },
  })
  onCleanup(() => t.stop())
  return Object.assign(t, { connection })
}

/** True once the broker holds no message of `queue`, neither ready nor unacknowledged. */
export async function settled(queue: string, node?: string): Promise<boolean> {
  const n = await queueCounts(queue, node)
  return n?.ready === 0 && n.unacked === 0
}
