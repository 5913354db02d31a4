import { connect, type ChannelModel } from 'amqplib'
import { SluiceError, type ErrorCode, type ErrorInfo } from '../../src/sdk/index.js'
import type { AmqpConnectionOptions } from './options.js'

/** AMQP reply codes that trying again will not fix (spec section 1.9: 403, 404, 405, 406, 530...). */
const PERMANENT_REPLY_CODES = new Set([402, 403, 404, 405, 406, 501, 502, 503, 504, 530, 540])

/** An amqplib or socket error, as far as we read it. */
interface AmqpErrorLike {
  message?: unknown
  /** AMQP reply code (number) or a Node socket code (string, e.g. ECONNREFUSED). */
  code?: unknown
}

/** The AMQP reply code of an amqplib error (404 NOT_FOUND, 406 PRECONDITION_FAILED...), if any. */
export function replyCode(err: unknown): number | undefined {
  const code = (err as AmqpErrorLike | null)?.code
  return typeof code === 'number' ? code : undefined
}

/** True when the broker refused for a reason that trying again will not change. */
export function isPermanent(err: unknown): boolean {
  const code = replyCode(err)
  if (code !== undefined) return PERMANENT_REPLY_CODES.has(code)
  // amqplib reports a refused login as a handshake error without a reply code.
  return /ACCESS_REFUSED|authentication|not allowed/i.test(describe(err))
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as AmqpErrorLike).code
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message
  }
  return String(err)
}

/** Maps an amqplib or socket error to a coded error at the connector boundary. */
export function toSluiceError(err: unknown, code: ErrorCode, what: string, context: Record<string, unknown>): SluiceError {
  if (err instanceof SluiceError) return err
  return new SluiceError(code, `${what}: ${describe(err)}`, { cause: err, context, retriable: !isPermanent(err) })
}

export function errorInfo(err: unknown): ErrorInfo | { message: string } {
  return err instanceof SluiceError ? err.toJSON() : { message: describe(err) }
}

/** The URL without its password, for logs and health details. */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@')
  }
}

/**
 * Opens one AMQP connection with the configured heartbeat and a connection name the broker shows
 * (`rabbitmqctl list_connections name client_properties`). Rejects with amqplib's error; callers
 * map it. `heartbeat` in the URL wins over `heartbeatSeconds`.
 */
export async function openConnection(opts: Required<AmqpConnectionOptions>, connectionName: string): Promise<ChannelModel> {
  const url = new URL(opts.url)
  if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(opts.heartbeatSeconds))
  const model = await withTimeout(
    connect(url.toString(), { timeout: opts.connectTimeoutMs, noDelay: true, clientProperties: { connection_name: connectionName } }),
    opts.connectTimeoutMs,
  )
  return model
}

/** Rejects after `ms` (the socket timeout covers the TCP connect, not a broker that never answers the handshake). */
function withTimeout<T extends ChannelModel>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        // Close a connection that opens after we gave up, or it would linger.
        p.then((m) => m.close()).catch(() => undefined)
        reject(new Error(`no AMQP connection within ${ms} ms`))
      }, ms)
    }),
  ])
}

/** Sleeps `ms`, or less when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
