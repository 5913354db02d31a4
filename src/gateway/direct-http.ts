/**
 * Direct HTTP: worker hosts answer HTTP-triggered functions themselves, on connections the gateway
 * hands them, so a request costs no hop between processes (config `http.direct`, default on).
 *
 * The gateway keeps the listening socket. A new connection's first bytes are read here; when
 * they hold a whole request (head, and body by Content-Length) for a function pinned on a host,
 * the socket goes to that host over Node's IPC channel with those bytes, and the host's own
 * fastify server (same settings) serves the connection from then on (src/sandbox/host/http-direct.ts).
 * Everything else is served here as before. A pin is an instance the scheduler keeps for the
 * function while direct requests use it (Scheduler.pin); it is taken after the function's first
 * request here, and let go after scale.idleTimeoutMs without direct requests, when its code is
 * replaced, its route removed, or its host or instance lost. A keep-alive connection that called a
 * function here gets `Connection: close` once that function has a pin, so the client's next
 * connection goes direct.
 *
 * Kept consistent with the gateway: the host checks function keys (digests pushed from here),
 * bodyLimit, timeouts and maxBacklog as the gateway would; every invocation is reported here and
 * recorded like the gateway's own (stats, recent list, logs, metrics); admin reads ask the hosts
 * for their latest reports first. What a direct invocation writes to its outputs is published here
 * (the broker connections are the gateway's) before the host replies.
 */
import type { FastifyReply } from 'fastify'
import { type ErrorInfo, toInfo } from '../errors.js'
import { asLogger } from '../log.js'
import type { DirectReport, FromHost, HttpFromHost, HttpPin, ToHost } from '../sandbox/protocol.js'
import type { Pinned } from '../scheduler/scheduler.js'
import type { GatewayParts } from './assembly.js'
import type { FunctionKeyCache } from './function-keys.js'
import type { FunctionRoutes } from './function-routes.js'
import { interceptConnections } from './connection-handoff.js'

/** How long an answer from a host may take (flush, close) before it is given up on. */
const HOST_ANSWER_MS = 2000
/** How long a host may take to take a pin (its first loads the HTTP server code). */
const PIN_ANSWER_MS = 30_000
/** How often pins are checked (idle, replaced) and function keys refreshed. */
const TICK_MS = 1000
/** Function keys are pushed to hosts again this often (other instances may change them). */
const KEYS_MS = 10_000

interface Pin {
  id: number
  pinned: Pinned
  fn: string
  auth: 'anonymous' | 'function'
  keys: string[]
  lastUsed: number
}

export class DirectHttp {
  private readonly pins = new Map<string, Pin[]>()
  private readonly pinning = new Set<string>()
  /** Who waits for a host's answer, by message id (a pin's id for http-pin): see ask(). */
  private readonly answers = new Map<number, (ok: boolean) => void>()
  private nextId = 1
  private rr = 0
  private closing = false
  private timer: NodeJS.Timeout | undefined
  private lastKeys = 0
  private readonly log

  constructor(
    private readonly parts: GatewayParts,
    private readonly routes: FunctionRoutes,
    private readonly keys: FunctionKeyCache,
    private readonly adminHash: string | undefined,
  ) {
    this.log = asLogger(parts.log).child({ component: 'direct-http' })
  }

  private get enabled(): boolean {
    return this.parts.config.http.direct && !this.closing
  }

  /**
   * Before the server listens: admin reads wait for the hosts' latest reports, and the routes
   * tell which functions are called.
   */
  register(): void {
    const { app, pool } = this.parts
    app.addHook('onRequest', (request, _reply, done) => {
      if (this.pins.size === 0 || !(request.url.startsWith('/admin/') || request.url.startsWith('/metrics'))) return done()
      this.flush().then(() => done(), done)
    })
    this.routes.watch({ served: (fn, reply) => this.onServed(fn, reply), removed: (fn) => this.drop(fn) })
    this.keys.onInvalidate((fn) => this.pushKeys(fn))
    pool.on('http', (hostId: number, m: HttpFromHost, payload: string | undefined) => this.onHost(hostId, m, payload))
    pool.on('host-up', (hostId: number) => {
      const { http, log } = this.parts.config
      if (!http.direct) return
      pool.sendTo(hostId, {
        t: 'http-config',
        config: {
          bodyLimit: http.bodyLimit,
          requestTimeoutMs: http.requestTimeoutMs,
          keepAliveTimeoutMs: http.keepAliveTimeoutMs,
          logLevel: log.level,
          ...(http.trustProxy === undefined ? {} : { trustProxy: http.trustProxy }),
        },
      })
    })
    pool.on('host-down', (hostId: number) => this.dropWhere((p) => p.pinned.hostId === hostId))
    pool.on('instance-lost', (inst: number) => this.dropWhere((p) => p.pinned.inst === inst))
  }

  /** Once the server listens: new connections come here first. */
  install(): void {
    interceptConnections(this.parts.app.server, {
      active: () => this.pins.size > 0 && this.enabled,
      target: (method: string, url: string) => {
        const route = this.routes.lookup(method, url)
        const list = route ? this.pins.get(route.fn) : undefined
        if (!list || list.length === 0) return undefined
        const p = list[this.rr++ % list.length] as Pin
        return { hostId: p.pinned.hostId, fn: p.fn }
      },
      hand: (target, m, socket, done) => this.parts.pool.sendConnection(target.hostId, m, socket, done),
      log: this.log,
    })
    this.timer = setInterval(() => this.tick(), TICK_MS)
    this.timer.unref()
  }

  /**
   * Ends every pin: after a reload, whose new limits (timeoutMs, maxBacklog, scale) or code the
   * pins must not outlive. The next requests through the gateway pin again.
   */
  reset(): void {
    this.dropWhere(() => true)
  }

  /** Waits until every host has sent the reports of the requests it answered so far. */
  flush(): Promise<void> {
    return this.askHosts((id) => ({ t: 'http-flush', id }))
  }

  /** Stops handing connections over; hosts answer no new request and finish the running ones. */
  async close(): Promise<void> {
    this.closing = true
    if (this.timer) clearInterval(this.timer)
    await this.askHosts((id) => ({ t: 'http-close', id }))
    this.dropWhere(() => true)
  }

  private async askHosts(message: (id: number) => { t: 'http-flush' | 'http-close'; id: number }): Promise<void> {
    const hosts = new Set<number>()
    for (const list of this.pins.values()) for (const p of list) hosts.add(p.pinned.hostId)
    await Promise.all(
      [...hosts].map((hostId) => {
        const id = this.nextId++
        return this.ask(hostId, id, message(id), HOST_ANSWER_MS)
      }),
    )
  }

  /**
   * Sends `m` to a host and resolves once it answers message `id` (true when it did what was
   * asked), or with false when it is not up or does not answer within `ms`.
   */
  private ask(hostId: number, id: number, m: ToHost, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer)
        this.answers.delete(id)
        resolve(ok)
      }
      const timer = setTimeout(() => done(false), ms)
      this.answers.set(id, done)
      if (!this.parts.pool.sendTo(hostId, m)) done(false)
    })
  }

  // ---- pins ----

  private onServed(fn: string, reply: FastifyReply): void {
    if (!this.enabled) return
    const list = this.pins.get(fn)
    // This connection's client reconnects, and its next connection can go direct.
    if (list) void reply.header('connection', 'close')
    // One pin per worker host, leaving the gateway's queue at least one instance: a function with
    // scale.max 1 keeps its one instance, and its requests wait in order, behind the gateway.
    const f = this.parts.config.functions[fn]
    if (f && (list?.length ?? 0) < Math.min(this.parts.pool.hostIds().length, f.scale.max - 1)) void this.pin(fn)
  }

  private async pin(fn: string): Promise<void> {
    const { config, scheduler, pool } = this.parts
    const f = config.functions[fn]
    const route = this.routes.routeOf(fn)
    if (!f || !route?.direct || this.pinning.has(fn)) return
    if (pool.hostIds().length === 0) return
    this.pinning.add(fn)
    let pinned: Pinned | undefined
    try {
      pinned = await scheduler.pin(fn, new Set((this.pins.get(fn) ?? []).map((p) => p.pinned.hostId)))
      const keys = route.auth === 'function' ? await this.keys.get(fn) : []
      const id = this.nextId++
      const spec: HttpPin = {
        pin: id,
        inst: pinned.inst,
        fn,
        hash: pinned.hash,
        methods: route.methods.map((m) => m.toUpperCase()),
        url: route.url,
        auth: route.auth,
        source: route.direct.source,
        keys,
        timeoutMs: f.timeoutMs,
        cpuTimeMs: f.cpuTimeMs,
        maxBacklog: f.maxBacklog,
        ...(route.direct.wildcard === undefined ? {} : { wildcard: route.direct.wildcard }),
        ...(this.adminHash === undefined ? {} : { adminHash: this.adminHash }),
      }
      const ok = await this.ask(pinned.hostId, id, { t: 'http-pin', ...spec }, PIN_ANSWER_MS)
      const current = this.routes.routeOf(fn)
      if (!ok || this.closing || !pinned.current() || current !== route) {
        pool.sendTo(pinned.hostId, { t: 'http-unpin', pin: id })
        pinned.unpin()
        return
      }
      const list = this.pins.get(fn) ?? []
      list.push({ id, pinned, fn, auth: route.auth, keys, lastUsed: Date.now() })
      this.pins.set(fn, list)
      this.log.debug({ function: fn, host: pinned.hostId }, 'function pinned for direct HTTP')
    } catch (e) {
      pinned?.unpin()
      this.log.debug({ function: fn, err: toInfo(e) }, 'no direct HTTP for the function for now')
    } finally {
      this.pinning.delete(fn)
    }
  }

  /** Ends every pin of function `fn`. */
  private drop(fn: string): void {
    this.dropWhere((p) => p.fn === fn)
  }

  private dropWhere(pred: (p: Pin) => boolean): void {
    for (const [fn, list] of this.pins) {
      const keep: Pin[] = []
      for (const p of list) {
        if (!pred(p)) {
          keep.push(p)
          continue
        }
        this.parts.pool.sendTo(p.pinned.hostId, { t: 'http-unpin', pin: p.id })
        p.pinned.unpin()
      }
      if (keep.length === 0) this.pins.delete(fn)
      else this.pins.set(fn, keep)
    }
  }

  private tick(): void {
    const now = Date.now()
    const fns = this.parts.config.functions
    this.dropWhere((p) => !p.pinned.current() || now - p.lastUsed >= (fns[p.fn]?.scale.idleTimeoutMs ?? 0))
    if (now - this.lastKeys >= KEYS_MS) {
      this.lastKeys = now
      for (const fn of this.pins.keys()) this.pushKeys(fn)
    }
  }

  /** Reads function `fn`'s key digests and sends them to its hosts when they changed. */
  private pushKeys(fn: string): void {
    const list = this.pins.get(fn)
    if (list?.[0]?.auth !== 'function') return
    this.keys.get(fn).then(
      (keys) => {
        for (const p of this.pins.get(fn) ?? []) {
          if (p.keys.length === keys.length && p.keys.every((k, i) => k === keys[i])) continue
          p.keys = keys
          this.parts.pool.sendTo(p.pinned.hostId, { t: 'http-keys', fn, keys })
        }
      },
      (e: unknown) => this.log.warn({ function: fn, err: toInfo(e) }, 'could not read function keys for direct HTTP; hosts keep the last ones'),
    )
  }

  // ---- messages from hosts ----

  private onHost(hostId: number, m: HttpFromHost | FromHost, payload: string | undefined): void {
    switch (m.t) {
      case 'http-pinned':
        if (m.error) this.log.warn({ host: hostId, err: m.error }, 'a worker host could not serve a function directly')
        this.answers.get(m.pin)?.(m.error === undefined)
        return
      case 'http-flushed':
      case 'http-closed':
        this.answers.get(m.id)?.(true)
        return
      case 'http-reports':
        this.record(payload)
        return
      case 'http-forward':
        void this.forward(hostId, m, payload)
        return
      case 'http-outputs':
        void this.publish(hostId, m, payload)
        return
      default:
        return
    }
  }

  private record(payload: string | undefined): void {
    let reports: DirectReport[]
    try {
      reports = JSON.parse(payload ?? '[]') as DirectReport[]
    } catch {
      return
    }
    const now = Date.now()
    const { router, pool } = this.parts
    for (const r of reports) {
      for (const p of this.pins.get(r.fn) ?? []) p.lastUsed = now
      const error = r.error ? pool.mapError(r.error, r.hash) : undefined
      router.recordDirect(r.fn, {
        invocationId: r.invocationId,
        kind: 'sync',
        size: 1,
        ok: r.ok,
        failed: r.ok ? 0 : 1,
        durationMs: r.durationMs,
        waitMs: 0,
        coldStart: false,
        logs: r.logs,
        ...(error ? { error } : {}),
        ...(r.ok ? { result: r.result ?? '' } : {}),
      })
    }
  }

  /** Publishes a direct invocation's outputs with the gateway's bindings and answers the host. */
  private async publish(hostId: number, m: Extract<HttpFromHost, { t: 'http-outputs' }>, payload: string | undefined): Promise<void> {
    let error: ErrorInfo | undefined
    try {
      error = await this.parts.router.publishOutputs(m.fn, JSON.parse(payload ?? '[]') as Array<{ name: string; value: unknown }>)
    } catch (e) {
      error = toInfo(e, 'SLUICE_ERR_OUTPUT_FAILED')
    }
    this.parts.pool.sendTo(hostId, error ? { t: 'http-published', id: m.id, error } : { t: 'http-published', id: m.id })
  }

  /** Answers a request a host does not serve (another route, the admin API) with this server. */
  private async forward(hostId: number, m: Extract<HttpFromHost, { t: 'http-forward' }>, payload: string | undefined): Promise<void> {
    const { app, pool } = this.parts
    try {
      const res = await app.inject({
        method: m.method as 'GET',
        url: m.url,
        headers: m.headers as Record<string, string>,
        remoteAddress: m.remoteAddress,
        ...(payload === undefined ? {} : { payload: Buffer.from(payload, 'base64') }),
      })
      pool.sendTo(
        hostId,
        { t: 'http-forwarded', id: m.id, status: res.statusCode, headers: res.headers as Record<string, string | string[]> },
        res.rawPayload.toString('base64'),
      )
    } catch (e) {
      this.log.error({ err: toInfo(e) }, 'a request forwarded by a worker host failed')
      pool.sendTo(hostId, { t: 'http-forwarded', id: m.id, status: 500, headers: { 'content-type': 'application/json' } })
    }
  }
}
