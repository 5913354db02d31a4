/**
 * How an HTTP request becomes a function's event, and a function's result an HTTP reply. Shared
 * by the HTTP trigger (connectors/http) and the worker hosts that serve requests directly
 * (src/sandbox/host/http-direct.ts), so a request reads the same to a function whichever
 * process took its connection.
 */
import { SluiceError } from '../errors.js'
import type { HttpReply, HttpRequestInfo, InvocationResult, TriggerEvent } from './index.js'
import { nowIso } from './time.js'

/** Headers that carry credentials or belong to the connection: never handed to the function. */
const HIDDEN_HEADERS = new Set(['x-functions-key', 'x-sluice-key', 'authorization', 'cookie'])
/** Headers the function may not set: the server owns framing. */
const RESERVED_REPLY_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade'])

/** The event of one request; `wildcard` names the route's last {*name} segment, if it has one. */
export function httpEvent(req: HttpRequestInfo, source: string, wildcard: string | undefined): TriggerEvent {
  const headers: Record<string, string | string[] | undefined> = {}
  const all = req.headers
  for (const k of Object.keys(all)) if (!HIDDEN_HEADERS.has(k)) headers[k] = all[k]
  return {
    id: req.requestId,
    source,
    time: nowIso(),
    body: req.body ?? null,
    meta: { method: req.method, path: req.path, url: req.url, params: namedParams(req.params, wildcard), query: req.query, headers, ip: req.ip },
  }
}

/** fastify names a catch-all `*`; the function sees the name from the route, `{*path}`. */
function namedParams(p: Record<string, string>, wildcard: string | undefined): Record<string, string> {
  if (!wildcard || !('*' in p)) return p
  const { '*': rest, ...others } = p
  return { ...others, [wildcard]: rest as string }
}

function isReplyShape(v: unknown): v is { status?: unknown; headers?: unknown; body?: unknown; isBase64Encoded?: unknown } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const keys = Object.keys(v)
  return keys.length > 0 && keys.every((k) => k === 'status' || k === 'headers' || k === 'body' || k === 'isBase64Encoded')
}

/**
 * Turns a function's return value into an HTTP reply: `{ status, headers, body }` (body: string,
 * or JSON; `isBase64Encoded: true` for binary), or any other value as a 200 JSON body.
 */
export function toReply(value: unknown, fn: string, invocationId: string): HttpReply {
  if (!isReplyShape(value)) return { status: 200, headers: {}, body: value ?? null }
  const status = value.status === undefined ? 200 : value.status
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
    throw new SluiceError('SLUICE_ERR_FUNCTION_RESULT_INVALID', `function ${fn} returned an invalid HTTP status`, { context: { function: fn, invocationId } })
  }
  const headers: Record<string, string> = {}
  if (value.headers !== undefined) {
    if (value.headers === null || typeof value.headers !== 'object') {
      throw new SluiceError('SLUICE_ERR_FUNCTION_RESULT_INVALID', `function ${fn} returned headers that are not an object`, {
        context: { function: fn, invocationId },
      })
    }
    for (const [k, v] of Object.entries(value.headers as Record<string, unknown>)) {
      const name = k.toLowerCase()
      if (RESERVED_REPLY_HEADERS.has(name) || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) continue
      const text = String(v)
      // CR/LF would split the header; Node refuses any other character outside tab and visible
      // latin1 only while writing the reply, too late for a coded error.
      if (/[^\t\x20-\x7e\x80-\xff]/.test(text)) continue
      headers[name] = text
    }
  }
  let body = value.body ?? null
  if (value.isBase64Encoded === true && typeof body === 'string') body = Buffer.from(body, 'base64')
  // Under a content type of the function's choosing fastify sends only strings and bytes.
  else if (body !== null && typeof body !== 'string' && headers['content-type'] !== undefined) body = JSON.stringify(body)
  return { status, headers, body }
}

/** The coded error a failed invocation answers with; its invocation id leads to the logs. */
export function invocationFailure(r: Pick<InvocationResult, 'error' | 'invocationId'>, fn: string): SluiceError {
  const code = r.error?.code ?? 'SLUICE_ERR_FUNCTION_THREW'
  const message = code === 'SLUICE_ERR_FUNCTION_TIMEOUT' ? `function ${fn} timed out` : `function ${fn} failed (${code}); the invocation id leads to its logs`
  return new SluiceError(code, message, { context: { function: fn, invocationId: r.invocationId } })
}
