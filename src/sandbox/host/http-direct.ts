/**
 * Direct HTTP in a worker host: the gateway hands this host client connections whose first
 * request is for a function pinned here (src/gateway/direct-http.ts), and the host answers them
 * itself: parse with the gateway's own server settings (createHttpServer), check the function's
 * keys, build the event as the HTTP trigger does (src/sdk/http.ts), run the pinned instance, reply.
 * No hop through the gateway per request. Anything else on such a connection (another route, the
 * admin API) is forwarded to the gateway and answered with its reply. Each invocation is reported
 * to the gateway (in groups, and at once when it asks before answering an admin read), which
 * records it as it records its own.
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import FindMyWay, { type HTTPMethod } from 'find-my-way'
import { type ErrorInfo, SluiceError } from '../../errors.js'
import { functionKeyRefusal } from '../../http/auth.js'
import { createHttpServer, sendError, sendFunctionReply } from '../../http/server.js'
import { createLogger } from '../../log.js'
import { batchJson } from '../../router/batch-json.js'
import { checkEvent, syncResultError } from '../../router/event-check.js'
import { overloaded } from '../../router/invoke.js'
import { PREVIEW_CHARS } from '../../router/report.js'
import { RECENT } from '../../router/stats.js'
import { preview } from '../../router/safe-json.js'
import { httpEvent, invocationFailure, toReply } from '../../sdk/http.js'
import { parseEnvelope } from '../envelope.js'
import type { DirectReport, FromHost, HostHttpConfig, HttpPin, HttpToHost, RunPayload } from '../protocol.js'
import type { Instance, Isolates } from './isolates.js'

const METHODS: HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']
/** Content types the server keeps as text (src/http/server.ts); others arrive as base64. */
const TEXT_TYPES = new Set(['text/plain', 'text/html', 'text/csv', 'text/xml', 'application/xml', 'application/x-www-form-urlencoded'])
/** Reports are sent at least this often while requests run (and at once on a flush). */
const REPORT_MS = 25

/** What the gateway answers a request of this host with. */
type GatewayAnswer = Extract<HttpToHost, { t: 'http-forwarded' | 'http-published' }>

/** A report waiting to be sent, with the value its preview is made from. */
type Pending = DirectReport & { value?: unknown }

interface PinState extends HttpPin {
  inflight: number
  closed: boolean
}

export interface HostHttpDeps {
  send(m: FromHost, payload?: string): void
  isolates: Isolates
  /** The instance, once up; undefined when it failed or is gone. */
  instance(inst: number): Instance | Promise<Instance | undefined> | undefined
  /** A direct run lost the instance (timeout, memory): the host forgets it. */
  lost(inst: number): void
}

export class HostHttp {
  private app: FastifyInstance | undefined
  private readonly table = FindMyWay<FindMyWay.HTTPVersion.V1>({ ignoreTrailingSlash: true, maxParamLength: 500 })
  private readonly pins = new Map<number, PinState>()
  private reports: Pending[] = []
  private reportTimer: NodeJS.Timeout | undefined
  private lastFlush = 0
  /** Requests to the gateway (forwarded HTTP requests, outputs to publish) waiting for its answer, by id. */
  private readonly asked = new Map<number, (m: GatewayAnswer, payload: string | undefined) => void>()
  private nextAsk = 1
  private inflight = 0
  private closing: number | undefined
  private closedSent = false

  constructor(private readonly deps: HostHttpDeps) {}

  async handle(m: HttpToHost, payload: string | undefined): Promise<void> {
    switch (m.t) {
      case 'http-config':
        await this.configure(m.config)
        return
      case 'http-pin':
        return this.pin(m)
      case 'http-unpin': {
        const p = this.pins.get(m.pin)
        if (p) this.unpin(p)
        return
      }
      case 'http-keys':
        for (const p of this.pins.values()) if (p.fn === m.fn) p.keys = m.keys
        return
      case 'http-flush':
        this.flushReports()
        this.deps.send({ t: 'http-flushed', id: m.id })
        return
      case 'http-close':
        this.closing = m.id
        this.app?.server.closeIdleConnections()
        this.closedIfIdle()
        return
      case 'http-forwarded':
      case 'http-published':
        this.asked.get(m.id)?.(m, payload)
        this.asked.delete(m.id)
        return
    }
  }

  /** A connection the gateway handed over, with the bytes it read to route it. */
  accept(socket: Socket, head: Buffer): void {
    if (!this.app) {
      socket.destroy()
      return
    }
    socket.unshift(head)
    this.app.server.emit('connection', socket)
  }

  /** The instance stopped (destroyed by the gateway, or lost): its pins end. */
  instanceGone(inst: number): void {
    for (const p of this.pins.values()) if (p.inst === inst) this.unpin(p)
  }

  private async configure(config: HostHttpConfig): Promise<void> {
    if (this.app) return
    const app = createHttpServer(config, createLogger(config.logLevel))
    app.route({ method: METHODS, url: '/*', exposeHeadRoute: false, handler: (request, reply) => this.dispatch(request, reply) })
    this.app = app
    await app.ready()
    // Node's server tracks connections (requestTimeout, headersTimeout, closeIdleConnections) from
    // its 'listening' event on; this one never listens itself, its connections come from accept().
    app.server.emit('listening')
  }

  private async pin(m: HttpPin): Promise<void> {
    const instance = await this.deps.instance(m.inst)
    if (!instance) {
      const error: ErrorInfo = { code: 'SLUICE_ERR_SANDBOX_INSTANCE_START', message: `instance ${m.inst} of ${m.fn} is not running`, retriable: true }
      this.deps.send({ t: 'http-pinned', pin: m.pin, error })
      return
    }
    const p: PinState = { ...m, inflight: 0, closed: false }
    try {
      this.table.on(m.methods as HTTPMethod[], m.url, () => undefined, { pin: m.pin })
    } catch (e) {
      const error: ErrorInfo = { code: 'SLUICE_ERR_CONFIG_ROUTE', message: `route ${m.url} of ${m.fn}: ${(e as Error).message}`, retriable: false }
      this.deps.send({ t: 'http-pinned', pin: m.pin, error })
      return
    }
    this.pins.set(m.pin, p)
    this.deps.send({ t: 'http-pinned', pin: m.pin })
  }

  private unpin(p: PinState): void {
    if (p.closed) return
    p.closed = true
    this.pins.delete(p.pin)
    this.table.off(p.methods as HTTPMethod[], p.url)
  }

  private dispatch(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> | FastifyReply {
    const found = this.table.find(request.method as HTTPMethod, request.url)
    const p = found ? this.pins.get((found.store as { pin: number }).pin) : undefined
    // Not (or no longer) served here: the gateway answers, and the client's next connection is
    // routed afresh.
    if (!found || !p) return this.forward(request, reply, true)
    if (this.closing !== undefined) {
      void reply.header('connection', 'close')
      return sendError(reply, request, new SluiceError('SLUICE_ERR_HTTP_SHUTTING_DOWN', 'the gateway is shutting down'))
    }
    if (p.auth === 'function') {
      const refused = functionKeyRefusal(p.fn, request, p.keys, p.adminHash)
      if (refused) return sendError(reply, request, refused)
    }
    if (p.inflight >= p.maxBacklog) return sendError(reply, request, overloaded(p.fn, p.inflight, p.maxBacklog))
    const instance = this.deps.instance(p.inst)
    if (instance === undefined) {
      this.unpin(p)
      return this.forward(request, reply, true)
    }
    // A long run holds the instance (it moved to the thread pool): the gateway runs this request on
    // another instance rather than queue it behind, as it would for its own requests.
    if (!(instance instanceof Promise) && instance.busy) return this.forward(request, reply, false)
    return this.run(p, instance, found.params as Record<string, string>, request, reply)
  }

  private async run(
    p: PinState,
    pending: Instance | Promise<Instance | undefined>,
    params: Record<string, string>,
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply> {
    const url = request.url
    const q = url.indexOf('?')
    const event = httpEvent(
      {
        method: request.method,
        url,
        path: q < 0 ? url : url.slice(0, q),
        params: { ...params },
        query: request.query as Record<string, string | string[]>,
        headers: request.headers,
        body: request.body,
        ip: request.ip,
        requestId: request.id,
      },
      p.source,
      p.wildcard,
    )
    const checked = checkEvent(event)
    if (checked.error) return sendError(reply, request, new SluiceError(checked.error.code, checked.error.message, { context: { function: p.fn } }))
    const json = batchJson([{ json: checked.json, raw: checked.raw, attempts: 1 }])
    const invocationId = randomUUID()
    const t0 = performance.now()
    p.inflight++
    this.inflight++
    let payload: RunPayload
    let error: ErrorInfo | undefined
    // Until the reply is ready (outputs confirmed too) the request counts as in flight.
    try {
      const instance = await pending
      if (!instance) {
        this.unpin(p)
        return this.forward(request, reply, true)
      }
      const r = await this.deps.isolates.run(instance, json, invocationId, p.timeoutMs, p.cpuTimeMs)
      if (r.lost) {
        this.unpin(p)
        this.deps.lost(p.inst)
      }
      payload = r.error ? { ok: false, error: r.error, outputs: [], logs: [] } : parseEnvelope(r.envelope, p.fn)
      error = (payload.ok ? undefined : payload.error) ?? syncResultError(p.fn, payload.value)
      // Outputs go out through the gateway's broker connections; the reply waits for their confirmation.
      if (!error && payload.outputs.length > 0) error = await this.publish(p.fn, payload.outputs)
    } finally {
      p.inflight--
      this.inflight--
      // After this turn: the reply is written first.
      setImmediate(() => this.closedIfIdle())
    }
    const report: Pending = { fn: p.fn, invocationId, ok: !error, durationMs: performance.now() - t0, logs: payload.logs, hash: p.hash }
    if (error) report.error = error
    else report.value = payload.value
    this.report(report)
    if (p.closed || this.closing !== undefined) void reply.header('connection', 'close')
    if (error) return sendError(reply, request, invocationFailure({ error, invocationId }, p.fn))
    try {
      return sendFunctionReply(reply, toReply(payload.value, p.fn, invocationId))
    } catch (e) {
      return sendError(reply, request, e)
    }
  }

  /**
   * Has the gateway answer a request this host does not serve: it runs it through its own server
   * (admin rules apply to the client's address) and the reply comes back here. A server-sent
   * event stream cannot come back in one piece: it gets 421, and the client reconnects.
   */
  private forward(request: FastifyRequest, reply: FastifyReply, reroute: boolean): Promise<FastifyReply> | FastifyReply {
    if (reroute) void reply.header('connection', 'close')
    if (request.method === 'GET' && request.url.split('?')[0] === '/admin/events') {
      return sendError(
        reply,
        request,
        new SluiceError('SLUICE_ERR_HTTP_MISDIRECTED', 'this connection is served by a worker host; open a new connection for the live feed'),
      )
    }
    const id = this.nextAsk++
    const { socket } = request
    const headers = { ...request.headers }
    delete headers['transfer-encoding']
    delete headers['content-length']
    const body = rawBody(request)
    const sent = new Promise<FastifyReply>((resolve) => {
      this.asked.set(id, (m, payload) => {
        if (m.t !== 'http-forwarded') return
        void reply.code(m.status)
        for (const [k, v] of Object.entries(m.headers)) {
          if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection' && k !== 'keep-alive') void reply.header(k, v)
        }
        resolve(reply.send(payload === undefined ? '' : Buffer.from(payload, 'base64')))
      })
    })
    this.deps.send(
      { t: 'http-forward', id, method: request.method, url: request.url, headers, remoteAddress: socket.remoteAddress ?? '' },
      body === undefined ? undefined : body.toString('base64'),
    )
    return sent
  }

  /** Has the gateway publish an invocation's outputs; resolves with the error that fails it, if any. */
  private publish(fn: string, outputs: RunPayload['outputs']): Promise<ErrorInfo | undefined> {
    const id = this.nextAsk++
    return new Promise((resolve) => {
      this.asked.set(id, (m) => resolve(m.t === 'http-published' ? m.error : undefined))
      this.deps.send({ t: 'http-outputs', id, fn }, JSON.stringify(outputs))
    })
  }

  /**
   * Queues a report. Under load reports go in groups every REPORT_MS; a request after a quiet
   * spell is reported at once, before its reply, so a client that reads the admin API right after
   * its call finds it counted.
   */
  private report(r: Pending): void {
    this.reports.push(r)
    if (this.reportTimer) return
    if (performance.now() - this.lastFlush >= REPORT_MS) this.flushReports()
    else this.reportTimer = setTimeout(() => this.flushReports(), REPORT_MS)
  }

  private flushReports(): void {
    if (this.reportTimer) clearTimeout(this.reportTimer)
    this.reportTimer = undefined
    if (this.reports.length === 0) return
    this.lastFlush = performance.now()
    const reports = this.reports
    this.reports = []
    // Only the newest RECENT of a function stay in its recent list: older ones need no preview.
    const seen = new Map<string, number>()
    for (let i = reports.length - 1; i >= 0; i--) {
      const r = reports[i] as Pending
      const n = (seen.get(r.fn) ?? 0) + 1
      seen.set(r.fn, n)
      if (r.ok && n <= RECENT) r.result = preview(r.value, PREVIEW_CHARS)
      r.value = undefined
    }
    this.deps.send({ t: 'http-reports' }, JSON.stringify(reports))
  }

  private closedIfIdle(): void {
    if (this.closing === undefined || this.inflight > 0 || this.closedSent) return
    this.closedSent = true
    this.flushReports()
    this.deps.send({ t: 'http-closed', id: this.closing })
  }
}

/** The request body as the client sent it, from what the server's content parsers made of it. */
function rawBody(request: FastifyRequest): Buffer | undefined {
  const body = request.body
  if (body === undefined || body === null) return undefined
  const type = String(request.headers['content-type'] ?? '')
    .split(';')[0]
    ?.trim()
    .toLowerCase()
  if (type === 'application/json') return Buffer.from(JSON.stringify(body), 'utf8')
  if (typeof body !== 'string') return Buffer.from(JSON.stringify(body), 'utf8')
  return TEXT_TYPES.has(type ?? '') ? Buffer.from(body, 'utf8') : Buffer.from(body, 'base64')
}
