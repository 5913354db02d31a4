/**
 * The gateway: one object holding the parts built in src/gateway/assembly.ts, started and stopped
 * by src/gateway/lifecycle.ts, with triggers (src/gateway/triggers.ts), HTTP function routes
 * (src/gateway/function-routes.ts) and the admin API (src/gateway/admin-facade.ts).
 */
import type { FastifyInstance } from 'fastify'
import type { GatewayConfig } from './config/schema.js'
import type { AdminApi, FunctionInfo, HealthReport, ReloadResult } from './http/admin.js'
import { hashKey } from './http/auth.js'
import { LiveFeed } from './http/live.js'
import { Metrics, sourceLag } from './http/metrics.js'
import { asLogger, createLogger, type Pino } from './log.js'
import type { Router } from './router/router.js'
import type { InvocationRecord } from './router/stats.js'
import type { CompiledFunction } from './sandbox/compile.js'
import type { SandboxPool } from './sandbox/pool.js'
import type { Scheduler } from './scheduler/scheduler.js'
import type { InvocationResult, TriggerEvent } from './sdk/index.js'
import { openStore } from './store/open.js'
import type { DeadLetterQuery, Store } from './store/store.js'
import { GatewayAdmin, type GatewayState } from './gateway/admin-facade.js'
import { Reloader, type ReloadSource } from './gateway/reload.js'
import { createClusterMember } from './gateway/cluster.js'
import type { ClusterMember } from './cluster/member.js'
import { assembleParts, type GatewayOptions, type GatewayParts } from './gateway/assembly.js'
import { FunctionKeyCache } from './gateway/function-keys.js'
import { DirectHttp } from './gateway/direct-http.js'
import { FunctionRoutes } from './gateway/function-routes.js'
import type { FunctionUnit } from './gateway/function-unit.js'
import { startSequence, stopSequence, type LifecycleTarget } from './gateway/lifecycle.js'
import type { TriggerBinding } from './gateway/triggers.js'

export type { GatewayOptions } from './gateway/assembly.js'

let gatewaySeq = 0

/**
 * A running gateway: store, worker hosts, scheduler, router, HTTP server and triggers, started in
 * that order and stopped in reverse (see src/gateway/lifecycle.ts).
 */
export class Gateway implements AdminApi {
  readonly id = ++gatewaySeq
  /** The configuration in effect: a reload replaces it (sections that need a restart keep their start values). */
  get config(): GatewayConfig {
    return this.parts.config
  }
  readonly log: Pino
  readonly pool: SandboxPool
  readonly scheduler: Scheduler
  readonly router: Router
  readonly store: Store
  readonly app: FastifyInstance
  /** Snapshots and history for the dashboard (GET /admin/events). */
  readonly live: LiveFeed
  private readonly parts: GatewayParts
  /** One record per function, by name (see FunctionUnit). */
  private readonly units = new Map<string, FunctionUnit>()
  private readonly routes: FunctionRoutes
  /** Worker hosts serving HTTP functions on connections handed to them (src/gateway/direct-http.ts). */
  private readonly direct: DirectHttp
  private readonly admin: GatewayAdmin
  private readonly metricsRegistry: Metrics
  private readonly reloader: Reloader
  /** This instance in the cluster registry (heartbeat, GET /admin/instances, session takeover). */
  private readonly cluster: ClusterMember
  private state: GatewayState = 'starting'
  private stopPromise: Promise<void> | undefined
  private address = ''

  private constructor(
    opts: GatewayOptions & { store: Store },
    private readonly compiled: ReadonlyMap<string, CompiledFunction>,
  ) {
    this.parts = assembleParts(this.id, opts)
    ;({ log: this.log, pool: this.pool, scheduler: this.scheduler, router: this.router, store: this.store, app: this.app } = this.parts)
    const keys = new FunctionKeyCache(this.store)
    const adminKey = this.config.admin.key
    const adminHash = adminKey === undefined ? undefined : hashKey(adminKey)
    this.routes = new FunctionRoutes({ keys, ...(adminHash === undefined ? {} : { adminHash }) })
    this.direct = new DirectHttp(this.parts, this.routes, keys, adminHash)
    this.reloader = new Reloader({ parts: this.parts, units: this.units, routes: this.routes, state: () => this.state })
    this.reloader.onReload(() => this.direct.reset())
    this.metricsRegistry = new Metrics(this.id, () => ({
      functions: [...this.units.keys()].map((name) => {
        const s = this.scheduler.stats(name)
        return { name, instances: s.instances, busy: s.busy, waiting: s.waiting, backlog: this.router.stats(name).backlog }
      }),
      connections: this.triggers().map((b) => ({ function: b.fn, kind: b.kind, ...(b.connection ? { connection: b.connection } : {}), up: b.health.up })),
      hostsUp: this.pool.hostIds().length,
      lag: sourceLag(this.triggers()),
    }))
    this.admin = new GatewayAdmin({
      parts: this.parts,
      units: this.units,
      keys,
      state: () => this.state,
      metrics: () => this.metricsRegistry.render(),
      reload: () => this.reloader.reload(),
      instances: () => this.cluster.view(),
    })
    this.cluster = createClusterMember({
      parts: this.parts,
      units: this.units,
      state: () => this.state,
      url: () => this.address,
      connections: () => this.admin.connections(),
    })
    this.live = new LiveFeed({
      gateway: this.id,
      log: asLogger(this.log).child({ component: 'live' }),
      source: {
        functions: () => this.admin.functions(),
        health: () => this.admin.health(),
        lag: () => sourceLag(this.triggers()),
      },
    })
  }

  /**
   * Starts a gateway; resolves once the server listens and every trigger is subscribed. On a
   * failure everything started so far is stopped and the coded error is thrown.
   */
  static async start(opts: GatewayOptions): Promise<Gateway> {
    // The store opens first (PostgreSQL: connect and migrate), so a bad store fails the start
    // before anything consumes.
    const logger = opts.logger ?? createLogger(opts.config.log.level)
    const store = opts.store ?? (await openStore(opts.config, asLogger(logger)))
    let gw: Gateway
    try {
      gw = new Gateway({ ...opts, logger, store }, opts.compiled)
    } catch (e) {
      await store.close().catch(() => undefined)
      throw e
    }
    try {
      await startSequence(gw.lifecycle())
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

  /**
   * Graceful stop: triggers stop taking events while the router finishes in-flight batches
   * (queued events are answered `aborted`, so sources redeliver them), then the HTTP server,
   * scheduler, sandboxes and store close. Idempotent; bounded by `timeoutMs`.
   */
  stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.stopPromise ??= stopSequence(this.lifecycle(), opts.timeoutMs ?? 30000)
    return this.stopPromise
  }

  private triggers(): TriggerBinding[] {
    const out: TriggerBinding[] = []
    for (const u of this.units.values()) if (u.trigger) out.push(u.trigger)
    return out
  }

  private lifecycle(): LifecycleTarget {
    return {
      parts: this.parts,
      compiled: this.compiled,
      units: this.units,
      routes: this.routes,
      direct: this.direct,
      admin: this.admin,
      cluster: this.cluster,
      live: this.live,
      metrics: this.metricsRegistry,
      setState: (s) => {
        this.state = s
      },
      setUrl: (url) => {
        this.address = url
      },
    }
  }

  // ---- AdminApi (see src/gateway/admin-facade.ts) ----

  health(): HealthReport {
    return this.admin.health()
  }
  functions(): FunctionInfo[] {
    return this.admin.functions()
  }
  function(name: string): (FunctionInfo & { recent: InvocationRecord[] }) | undefined {
    return this.admin.function(name)
  }
  invoke(name: string, events: TriggerEvent[]): Promise<InvocationResult> {
    return this.admin.invoke(name, events)
  }
  listDeadLetters(q: DeadLetterQuery) {
    return this.admin.listDeadLetters(q)
  }
  getDeadLetter(id: string) {
    return this.admin.getDeadLetter(id)
  }
  deleteDeadLetter(id: string) {
    return this.admin.deleteDeadLetter(id)
  }
  replayDeadLetter(id: string) {
    return this.admin.replayDeadLetter(id)
  }
  createFunctionKey(fn: string, name: string): Promise<string> {
    return this.admin.createFunctionKey(fn, name)
  }
  listFunctionKeys(fn: string) {
    return this.admin.listFunctionKeys(fn)
  }
  deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    return this.admin.deleteFunctionKey(fn, name)
  }
  hosts() {
    return this.admin.hosts()
  }
  metrics() {
    return this.admin.metrics()
  }

  /**
   * Reads the configuration file and the function code again (or takes `source`) and applies what
   * changed without losing an event; see src/gateway/reload.ts. Never rejects.
   */
  reload(source?: ReloadSource): Promise<ReloadResult> {
    return this.reloader.reload(source)
  }

  /** Calls `listener` after every reload (--watch, SIGHUP, POST /admin/reload); returns its removal. */
  onReload(listener: (r: ReloadResult) => void): () => void {
    return this.reloader.onReload(listener)
  }

  /** The configuration file and every source file of the running functions (what --watch watches). */
  sources(): string[] {
    return this.reloader.sources()
  }
  instances() {
    return this.admin.instances()
  }
}
