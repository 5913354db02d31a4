import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { SluiceError, hasCode, ERRORS, type ErrorCode } from '../errors.js'
import type { Pino } from '../log.js'
import type { GatewayConfig } from '../config/schema.js'
import type { HttpReply } from '../sdk/index.js'

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; invocationId?: string }
}

export function errorBody(code: ErrorCode, message: string, requestId: string, invocationId?: string): ErrorBody {
  const error: ErrorBody['error'] = { code, message, requestId }
  if (invocationId) error.invocationId = invocationId
  return { error }
}

/** Maps fastify's own errors (body parsing, limits, validation) to sluice codes. */
function mapFastifyError(err: FastifyError): { code: ErrorCode; message: string } {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'SLUICE_ERR_HTTP_BODY_TOO_LARGE', message: 'the request body is larger than http.bodyLimit' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { code: 'SLUICE_ERR_HTTP_UNSUPPORTED_MEDIA', message: err.message }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { code: 'SLUICE_ERR_HTTP_BAD_JSON', message: err.message }
    case 'FST_ERR_VALIDATION':
      return { code: 'SLUICE_ERR_HTTP_BAD_REQUEST', message: err.message }
    default:
      break
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return { code: 'SLUICE_ERR_HTTP_BAD_JSON', message: `the body is not valid JSON: ${err.message}` }
  }
  if (err.statusCode === 413) return { code: 'SLUICE_ERR_HTTP_BODY_TOO_LARGE', message: err.message }
  if (err.statusCode === 415) return { code: 'SLUICE_ERR_HTTP_UNSUPPORTED_MEDIA', message: err.message }
  if (err.statusCode === 408) return { code: 'SLUICE_ERR_HTTP_TIMEOUT', message: err.message }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return { code: 'SLUICE_ERR_HTTP_BAD_REQUEST', message: err.message }
  return { code: 'SLUICE_ERR_HTTP_BAD_REQUEST', message: '' }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/**
 * Headers every function reply carries unless the function sets its own: no MIME sniffing, and
 * a sandboxed document, so a function that echoes input as HTML cannot run script with the
 * dashboard's origin (issue 9).
 */
const DEFAULT_REPLY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': 'sandbox',
}

/** Sends a function's HTTP reply (see toReply in src/sdk/http.ts) with the default headers. */
export function sendFunctionReply(reply: FastifyReply, out: HttpReply): FastifyReply {
  void reply.code(out.status)
  const headers = out.headers
  for (const k in DEFAULT_REPLY_HEADERS) if (headers[k] === undefined) void reply.header(k, DEFAULT_REPLY_HEADERS[k] as string)
  for (const k in headers) void reply.header(k, headers[k] as string)
  if (typeof out.body === 'string' && !headers['content-type']) void reply.type('text/plain; charset=utf-8')
  return reply.send(out.body)
}

/** Sends a coded JSON error. Unknown errors become a 500 that names the request id, never a stack. */
export function sendError(reply: FastifyReply, request: FastifyRequest, err: unknown): FastifyReply {
  if (err instanceof SluiceError || hasCode(err)) {
    const e = err as SluiceError
    const status = ERRORS[e.code].status
    if (e.code === 'SLUICE_ERR_ROUTER_OVERLOADED') void reply.header('retry-after', '1')
    const invocationId = typeof e.context?.invocationId === 'string' ? e.context.invocationId : undefined
    return reply.code(status >= 400 && status < 600 ? status : 500).send(errorBody(e.code, e.message, request.id, invocationId))
  }
  const fe = err as FastifyError
  if ((typeof fe?.code === 'string' && fe.code.startsWith('FST_')) || (fe?.statusCode !== undefined && fe.statusCode < 500)) {
    const mapped = mapFastifyError(fe)
    if (mapped.message !== '') return reply.code(ERRORS[mapped.code].status).send(errorBody(mapped.code, mapped.message, request.id))
  }
  request.log.error({ err }, 'unhandled error in request')
  return reply.code(500).send(errorBody('SLUICE_ERR_INTERNAL', `internal error; quote request id ${request.id} when reporting it`, request.id))
}

/**
 * The one fastify server: HTTP-triggered functions under /api, the admin API, /metrics and the
 * dashboard. JSON bodies are parsed with prototype-poisoning protection; other text types arrive
 * as strings, anything else as base64.
 */
export function createHttpServer(
  config: Pick<GatewayConfig['http'], 'bodyLimit' | 'trustProxy' | 'requestTimeoutMs' | 'keepAliveTimeoutMs'>,
  log: Pino,
): FastifyInstance {
  const app = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    // Per-request logs would cost more than the request; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    // Behind a proxy request.ip and request.protocol come from X-Forwarded-*; the admin API's
    // loopback rule reads the socket, and is switched off with trustProxy (see http/auth.ts).
    trustProxy: config.trustProxy ?? false,
    // Bounds receiving the request only. No connectionTimeout: it is a socket inactivity timer,
    // and a function running longer than it (within its own timeoutMs) lost its connection.
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 500 },
    // fastify's default (removeAdditional: true) silently strips keys that a schema with
    // additionalProperties: false forbids; an unknown key is an error here, as in the config.
    ajv: { customOptions: { removeAdditional: false } },
  })
  // Node checks request deadlines every connectionsCheckingInterval (30 s by default), so a
  // requestTimeoutMs of a few seconds fired up to 30 s late; check at a quarter of it instead.
  ;(app.server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(
    100,
    Math.min(30_000, Math.floor(config.requestTimeoutMs / 4)),
  )
  // fastify's JSON parser reports a __proto__ / constructor.prototype key as the same
  // FST_ERR_CTP_INVALID_JSON_BODY as a syntax error (it drops secure-json-parse's error): a body
  // it refuses that plain JSON.parse accepts was refused for poisoning.
  const secureJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    // Admin POSTs must be typed application/json (http/auth.ts) even when they carry nothing.
    if (text.length === 0 && req.url.startsWith('/admin/')) return done(null, undefined)
    secureJson(req, text, (err, value) => {
      if (err && text.length > 0 && isJson(text)) {
        return done(new SluiceError('SLUICE_ERR_HTTP_PROTO_POISONING', 'the JSON body contains a __proto__ or constructor.prototype key'), undefined)
      }
      done(err, value)
    })
  })
  app.addContentTypeParser(
    ['text/plain', 'text/html', 'text/csv', 'text/xml', 'application/xml', 'application/x-www-form-urlencoded'],
    { parseAs: 'string' },
    (_req, body, done) => done(null, body),
  )
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, (body as Buffer).toString('base64')))
  app.setErrorHandler((err, request, reply) => sendError(reply, request, err))
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody('SLUICE_ERR_HTTP_NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`, request.id)),
  )
  // A callback hook, not an async one: fastify then skips a promise per request.
  app.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id)
    done()
  })
  return app
}
