import { resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { hostChannel, timerSkipChannel } from './channels.js'
import { CONNECTORS } from './config/connectors.js'
import type { GatewayConfig } from './config/schema.js'
import { SluiceError, toInfo } from './errors.js'
import { registerAdminRoutes, type AdminApi, type ConnectionHealth, type FunctionInfo, type HealthReport } from './http/admin.js'
import { adminGuard, FUNCTION_KEY_HEADER, hashKey, header, keyMatches, newKey, presentedAdminKey } from './http/auth.js'
import { registerDashboard } from './http/dashboard.js'
import { LiveFeed, registerLiveRoutes } from './http/live.js'
import { Metrics, sourceLag } from './http/metrics.js'
import { createHttpServer, sendError } from './http/server.js'
import { asLogger, createLogger, type Pino } from './log.js'
import { Router } from './router/router.js'
import type { InvocationRecord } from './router/stats.js'
import type { CompiledFunction } from './sandbox/compile.js'
import { SandboxPool } from './sandbox/pool.js'
import { Scheduler } from './scheduler/scheduler.js'
import { reportsSkips, type Connector, type ConnectorContext, type ConnectorDefinition, type HttpRouteDef, type InvocationResult, type Logger, type OutputBinding, type TriggerEvent } from './sdk/index.js'
import { connectorState } from './store/connector-state.js'
import { SqliteStore } from './store/sqlite.js'
import type { Store } from './store/store.js'

export interface GatewayOptions {
  config: GatewayConfig
  compiled: ReadonlyMap<string, CompiledFunction>
  /** Default: pino JSON on stdout at config.log.level. */
  logger?: Pino
  connectors?: readonly ConnectorDefinition[]
  /** Default: SQLite at config.store.path. */
  store?: Store
}

interface Binding {
  fn: string
  kind: string
  connection?: string
  connector: Connector
  health: { up: boolean; detail?: string }
  abort: AbortController
}

let gatewaySeq = 0
/** How long function-key digests are cached before the store is read again. */
const KEY_CACHE_MS = 10_000

/**
 * A running gateway: store, worker hosts, scheduler, router, HTTP server and connectors, started
 * in that order and stopped in reverse (connectors stop taking events, the router drains, the
 * sandboxes stop, the store closes).
 */
export class Gateway implements AdminApi {
  readonly id = ++gatewaySeq
  readonly log: Pino
  readonly pool: SandboxPool
  readonly scheduler: Scheduler
  readonly router: Router
  readonly store: Store
  readonly app: FastifyInstance
  private readonly bindings: Binding[] = []
  private readonly outputs = new Map<string, Map<string, OutputBinding>>()
  private readonly metricsRegistry: Metrics
  /** Snapshots and history for the dashboard (GET /admin/events). */
  readonly live: LiveFeed
  /** Function key digests per function, cached as the read itself so a write can invalidate it. */
  private readonly keyHashes = new Map<string, Promise<string[]>>()
  private readonly defs: ReadonlyMap<string, ConnectorDefinition>
  private state: 'starting' | 'up' | 'stopping' | 'stopped' = 'starting'
  private stopPromise: Promise<void> | undefined
  private address = ''

  private constructor(
    readonly config: GatewayConfig,
    private readonly compiled: ReadonlyMap<string, CompiledFunction>,
    opts: GatewayOptions,
  ) {
    this.log = opts.logger ?? createLogger(config.log.level)
    const log = asLogger(this.log)
    this.defs = new Map((opts.connectors ?? CONNECTORS).map((d) => [d.kind, d]))
    this.store = opts.store ?? new SqliteStore(config.store.path === ':memory:' ? ':memory:' : resolve(config.root, config.store.path))
    const fns = Object.values(config.functions)
    this.pool = new SandboxPool({
      hosts: config.workers.hosts,
      prewarm: config.workers.prewarm,
      prewarmSizes: [...new Set(fns.map((f) => f.memoryMb))].slice(0, 4),
      log: log.child({ component: 'sandbox' }),
    })
    this.pool.on('host-down', (host: number, lost: number[]) => hostChannel.publish({ gateway: this.id, host, action: 'down', lostInstances: lost.length }))
    this.pool.on('host-up', (host: number) => hostChannel.publish({ gateway: this.id, host, action: 'up' }))
    this.scheduler = new Scheduler(this.pool, {
      gateway: this.id,
      log: log.child({ component: 'scheduler' }),
      hostMemoryMb: config.workers.memoryMb,
      maxInstancesPerHost: config.workers.maxInstancesPerHost,
    })
    this.router = new Router({ gateway: this.id, log, scheduler: this.scheduler, store: this.store })
    this.app = createHttpServer(config.http, this.log)
    this.metricsRegistry = new Metrics(this.id, () => ({
      functions: fns.map((f) => {
        const s = this.scheduler.stats(f.name)
        return { name: f.name, instances: s.instances, busy: s.busy, waiting: s.waiting, backlog: this.router.stats(f.name).backlog }
      }),
      connections: this.bindings.map((b) => ({ function: b.fn, kind: b.kind, ...(b.connection ? { connection: b.connection } : {}), up: b.health.up })),
      hostsUp: this.pool.hostIds().length,
      lag: sourceLag(this.bindings),
    }))
    this.live = new LiveFeed({
      gateway: this.id,
      log: log.child({ component: 'live' }),
      source: {
        functions: () => this.functions(),
        health: () => this.health(),
        lag: () => sourceLag(this.bindings),
      },
    })
  }

  /** Starts a gateway; resolves once every connector is subscribed and the server listens. */
  static async start(opts: GatewayOptions): Promise<Gateway> {
    const gw = new Gateway(opts.config, opts.compiled, opts)
    try {
      await gw.startParts()
    } catch (e) {
      await gw.stop({ timeoutMs: 2000 }).catch(() => undefined)
      throw e
    }
    return gw
  }

  /** Base URL of the HTTP server, e.g. http://127.0.0.1:7071 */
  get url(): string {
    return this.address
  }

  private async startParts(): Promise<void> {
    const { config } = this
    const log = asLogger(this.log)
    await this.pool.start()
    for (const fn of Object.values(config.functions)) {
      const code = this.compiled.get(fn.name)
      if (!code) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${fn.name} was not compiled`, { context: { function: fn.name } })
      this.pool.registerCode(code.hash, code.code)
      const outputs = new Map<string, OutputBinding>()
      for (const [name, out] of Object.entries(fn.outputs)) {
        const def = this.defs.get(out.kind)
        if (!def?.createOutput) throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_OUTPUT', `output kind ${out.kind} is not available`, { context: { function: fn.name } })
        const conn = out.connection ? config.connections[out.connection] : undefined
        outputs.set(
          name,
          def.createOutput({
            functionName: fn.name,
            outputName: name,
            output: out.options,
            ...(out.connection ? { connectionName: out.connection } : {}),
            ...(conn ? { connection: conn.options } : {}),
            log: log.child({ function: fn.name, output: name }),
          }),
        )
      }
      this.outputs.set(fn.name, outputs)
      this.scheduler.register({ name: fn.name, hash: code.hash, memoryMb: fn.memoryMb, outputs: [...outputs.keys()], timeoutMs: fn.timeoutMs, cpuTimeMs: fn.cpuTimeMs, scale: fn.scale })
      this.router.register({
        name: fn.name,
        batch: fn.trigger.kind === 'http' ? { maxSize: 1, maxWaitMs: 0 } : fn.batch,
        retry: fn.retry,
        maxBacklog: fn.maxBacklog,
        orderKey: fn.orderKey,
        maxConcurrency: fn.scale.max,
        outputs,
      })
    }
    this.scheduler.start()

    const adminHash = config.admin.key === undefined ? undefined : hashKey(config.admin.key)
    const guard = adminGuard(adminHash)
    registerAdminRoutes(this.app, this, guard)
    registerLiveRoutes(this.app, this.live, adminGuard(adminHash, { queryKey: true }))
    // The page shell holds no data: with an admin key it loads for anyone (its data calls need the
    // key); without one it keeps the admin API's loopback rule.
    registerDashboard(this.app, adminHash === undefined ? { guard } : {})
    const routes: Array<{ fn: string; def: HttpRouteDef }> = []
    await Promise.all(Object.values(config.functions).map((fn) => this.startTrigger(fn.name, routes)))
    for (const r of routes) this.registerRoute(r.fn, r.def)
    await this.app.listen({ port: config.http.port, host: config.http.host })
    const addr = this.app.server.address()
    const port = typeof addr === 'object' && addr ? addr.port : config.http.port
    this.address = `http://${config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host}:${port}`
    this.state = 'up'
    this.live.start()
    log.info({ url: this.address, functions: Object.keys(config.functions).length, hosts: config.workers.hosts }, 'gateway up')
  }

  private async startTrigger(fnName: string, routes: Array<{ fn: string; def: HttpRouteDef }>): Promise<void> {
    const fn = this.config.functions[fnName]
    if (!fn) return
    const def = this.defs.get(fn.trigger.kind)
    if (!def) throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER', `trigger kind ${fn.trigger.kind} is not available`, { context: { function: fnName } })
    const conn = fn.trigger.connection ? this.config.connections[fn.trigger.connection] : undefined
    const connector = def.createTrigger({
      functionName: fnName,
      trigger: fn.trigger.options,
      maxBacklog: fn.maxBacklog,
      ...(fn.trigger.connection ? { connectionName: fn.trigger.connection } : {}),
      ...(conn ? { connection: conn.options } : {}),
    })
    if (reportsSkips(connector)) {
      connector.onSkipped((at) => timerSkipChannel.publish({ gateway: this.id, function: fnName, scheduledAt: at.toISOString() }))
    }
    const binding: Binding = { fn: fnName, kind: fn.trigger.kind, connector, health: { up: false }, abort: new AbortController() }
    if (fn.trigger.connection) binding.connection = fn.trigger.connection
    this.bindings.push(binding)
    const log = asLogger(this.log).child({ function: fnName, trigger: fn.trigger.kind, ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}) })
    const scope = `${fn.trigger.kind}:${fnName}`
    const ctx: ConnectorContext = {
      signal: binding.abort.signal,
      log,
      deliver: (events) => this.router.deliver(fnName, events),
      invoke: (events, o) => this.router.invoke(fnName, events, o),
      flow: this.router.flow(fnName),
      state: connectorState(this.store, scope),
      setHealth: (up, detail) => {
        binding.health = detail === undefined ? { up } : { up, detail }
      },
    }
    if (def.http) {
      ctx.http = {
        route: (def) => {
          routes.push({ fn: fnName, def })
        },
      }
    }
    try {
      await connector.start(ctx)
    } catch (e) {
      const info = toInfo(e, 'SLUICE_ERR_CONNECTOR_START')
      throw new SluiceError(info.code, `function ${fnName}: ${fn.trigger.kind} trigger did not start: ${info.message}`, { cause: e, context: { function: fnName } })
    }
    if (!binding.health.detail) binding.health.up = true
  }

  private registerRoute(fnName: string, r: HttpRouteDef): void {
    const adminHash = this.config.admin.key === undefined ? undefined : hashKey(this.config.admin.key)
    this.app.route({
      method: [...r.methods],
      url: r.url,
      // HEAD runs a function only when the route lists it.
      exposeHeadRoute: false,
      handler: async (request, reply) => {
        if (r.auth === 'function') {
          const hashes = await this.functionKeyHashes(fnName)
          const ok = keyMatches(header(request, FUNCTION_KEY_HEADER), hashes) || (adminHash !== undefined && keyMatches(presentedAdminKey(request), [adminHash]))
          if (!ok) {
            throw new SluiceError(
              'SLUICE_ERR_HTTP_UNAUTHORIZED',
              hashes.length === 0 ? `function ${fnName} has no keys yet: create one with \`sluice keys create ${fnName}\`` : `send a key of function ${fnName} in ${FUNCTION_KEY_HEADER}`,
            )
          }
        }
        const abort = new AbortController()
        // The response's 'close', not the request's: since Node 16 an IncomingMessage emits 'close'
        // as soon as its body has been read, which aborted every queued request with a body.
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) abort.abort(new SluiceError('SLUICE_ERR_HTTP_TIMEOUT', 'the client went away'))
        })
        try {
          const out = await r.handle(
            {
              method: request.method,
              url: request.url,
              path: request.url.split('?')[0] ?? request.url,
              params: request.params as Record<string, string>,
              query: request.query as Record<string, string | string[]>,
              headers: request.headers,
              body: request.body,
              ip: request.ip,
              requestId: request.id,
            },
            abort.signal,
          )
          void reply.code(out.status).headers(out.headers)
          if (typeof out.body === 'string' && !out.headers['content-type']) void reply.type('text/plain; charset=utf-8')
          return reply.send(out.body)
        } catch (e) {
          return sendError(reply, request, e)
        }
      },
    })
  }

  private functionKeyHashes(fn: string): Promise<string[]> {
    let h = this.keyHashes.get(fn)
    if (!h) {
      // Caching the promise (not its value) means a read that began before a key write cannot
      // land in the cache after the write invalidated it, and keep a deleted key working.
      const p = this.store.functionKeyHashes(fn)
      h = p
      this.keyHashes.set(fn, p)
      const forget = () => this.keyHashes.get(fn) === p && this.keyHashes.delete(fn)
      p.catch(forget)
      // Other gateway instances sharing the store may change keys: re-read now and then.
      setTimeout(forget, KEY_CACHE_MS).unref()
    }
    return h
  }

  // ---- AdminApi ----

  health(): HealthReport {
    const connections: ConnectionHealth[] = this.bindings.map((b) => ({
      function: b.fn,
      kind: b.kind,
      ...(b.connection ? { connection: b.connection } : {}),
      up: b.health.up,
      ...(b.health.detail ? { detail: b.health.detail } : {}),
    }))
    const hosts = this.pool.info().map(({ id, up, pid, instances, restarts }) => ({ id, up, pid, instances, restarts }))
    const status: HealthReport['status'] =
      this.state === 'up' ? (connections.every((c) => c.up) && hosts.some((h) => h.up) ? 'up' : 'degraded') : this.state === 'starting' ? 'starting' : 'stopping'
    return { status, connections, hosts }
  }

  private info(name: string): FunctionInfo | undefined {
    const fn = this.config.functions[name]
    if (!fn) return undefined
    const s = this.scheduler.stats(name)
    const r = this.router.stats(name)
    const p = r.stats.percentiles()
    const info: FunctionInfo = {
      name,
      trigger: { kind: fn.trigger.kind, ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}), options: fn.trigger.options },
      code: fn.code,
      outputs: Object.keys(fn.outputs),
      batch: fn.batch,
      scale: fn.scale,
      retry: fn.retry,
      limits: { timeoutMs: fn.timeoutMs, cpuTimeMs: fn.cpuTimeMs, memoryMb: fn.memoryMb, maxBacklog: fn.maxBacklog },
      orderKey: fn.orderKey,
      instances: { total: s.instances, busy: s.busy, idle: s.idle },
      backlog: r.backlog,
      inflight: r.inflight,
      counts: {
        invocations: r.stats.invocations,
        failures: r.stats.failures,
        events: r.stats.events,
        eventsDone: r.stats.eventsDone,
        eventsDead: r.stats.eventsDead,
        retries: r.stats.retries,
        coldStarts: r.stats.coldStarts,
      },
    }
    if (p) info.latencyMs = { p50: round(p.p50), p99: round(p.p99) }
    if (r.stats.lastColdStartMs !== undefined) info.lastColdStartMs = round(r.stats.lastColdStartMs)
    return info
  }

  functions(): FunctionInfo[] {
    return Object.keys(this.config.functions).map((n) => this.info(n) as FunctionInfo)
  }

  function(name: string): (FunctionInfo & { recent: InvocationRecord[] }) | undefined {
    const info = this.info(name)
    return info && { ...info, recent: this.router.stats(name).stats.recentInvocations() }
  }

  invoke(name: string, events: TriggerEvent[]): Promise<InvocationResult> {
    if (!this.config.functions[name]) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${name}`)
    return this.router.invoke(name, events)
  }

  listDeadLetters(q: Parameters<Store['listDeadLetters']>[0]) {
    return this.store.listDeadLetters(q)
  }

  getDeadLetter(id: string) {
    return this.store.getDeadLetter(id)
  }

  deleteDeadLetter(id: string) {
    return this.store.deleteDeadLetter(id)
  }

  /**
   * Delivers a dead letter's event to its function again, with a fresh set of attempts. The
   * letter is removed once the event is done, or replaced by the new letter if it fails again.
   */
  async replayDeadLetter(id: string) {
    const dl = await this.store.getDeadLetter(id)
    if (!dl) throw new SluiceError('SLUICE_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter with id ${id}`)
    if (!this.config.functions[dl.function]) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${dl.function} of dead letter ${id} is no longer configured`)
    const [outcome] = await this.router.deliver(dl.function, [dl.event])
    if (outcome && outcome.status !== 'aborted') await this.store.deleteDeadLetter(id)
    return { outcome: outcome ?? { status: 'aborted' as const } }
  }

  async createFunctionKey(fn: string, name: string): Promise<string> {
    const key = newKey()
    await this.store.addFunctionKey(fn, name, hashKey(key))
    this.keyHashes.delete(fn)
    return key
  }

  listFunctionKeys(fn: string) {
    return this.store.listFunctionKeys(fn)
  }

  async deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    const deleted = await this.store.deleteFunctionKey(fn, name)
    this.keyHashes.delete(fn)
    return deleted
  }

  hosts() {
    return this.pool.info()
  }

  metrics() {
    return this.metricsRegistry.render()
  }

  /**
   * Graceful stop: connectors stop taking events while the router finishes in-flight batches
   * (queued events are answered `aborted`, so sources redeliver them), then the HTTP server,
   * scheduler, sandboxes and store close. Idempotent; bounded by `timeoutMs`.
   */
  stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.stopPromise ??= this.doStop(opts.timeoutMs ?? 30000)
    return this.stopPromise
  }

  private async doStop(timeoutMs: number): Promise<void> {
    const log: Logger = asLogger(this.log)
    this.state = 'stopping'
    const steps: Array<[string, () => Promise<unknown> | unknown]> = [
      [
        'connectors and router',
        () =>
          Promise.all([
            ...this.bindings.map((b) => {
              b.abort.abort()
              return b.connector.stop()
            }),
            this.router.close(timeoutMs),
          ]),
      ],
      ['live feed', () => this.live.close()],
      ['http server', () => this.app.close()],
      ['scheduler', () => this.scheduler.close()],
      ['outputs', () => Promise.all([...this.outputs.values()].flatMap((m) => [...m.values()].map((o) => o.close())))],
      ['sandboxes', () => this.pool.close()],
      ['metrics', () => this.metricsRegistry.close()],
      ['store', () => this.store.close()],
    ]
    for (const [name, step] of steps) {
      try {
        await withTimeout(Promise.resolve(step()), timeoutMs, name)
      } catch (e) {
        log.error({ step: name, err: toInfo(e, 'SLUICE_ERR_SANDBOX_CLOSED') }, 'shutdown step failed; continuing')
      }
    }
    this.state = 'stopped'
    log.info({}, 'gateway stopped')
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not stop within ${ms} ms`)), ms)
    }),
  ])
}

const round = (n: number) => Math.round(n * 100) / 100
