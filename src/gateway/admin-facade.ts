/**
 * The AdminApi the admin routes and the dashboard read: health, function info, invoke, dead
 * letters, function keys, hosts and metrics, answered from the gateway's parts.
 */
import { SluiceError } from '../errors.js'
import type { AdminApi, ConnectionHealth, FunctionInfo, HealthReport, ReloadResult } from '../http/admin.js'
import { hashKey, newKey } from '../http/auth.js'
import type { InvocationRecord } from '../router/stats.js'
import type { InvocationResult, Outcome, TriggerEvent } from '../sdk/index.js'
import { PROCESS_OWNER } from '../store/connector-state.js'
import { replayLeaseKey, type DeadLetterQuery, type Store } from '../store/store.js'
import { withLease } from '../store/with-lease.js'
import type { ClusterView } from '../cluster/types.js'
import type { GatewayParts } from './assembly.js'
import type { FunctionKeyCache } from './function-keys.js'
import type { FunctionUnit } from './function-unit.js'

export type GatewayState = 'starting' | 'up' | 'stopping' | 'stopped'

/** A replay holds its lease this long between renewals; a finished one keeps others off a minute. */
const REPLAY_LEASE = { ttlMs: 10_000, retainMs: 60_000 }

export interface AdminFacadeDeps {
  parts: GatewayParts
  units: ReadonlyMap<string, FunctionUnit>
  keys: FunctionKeyCache
  state(): GatewayState
  /** POST /admin/reload (src/gateway/reload.ts). */
  reload(): Promise<ReloadResult>
  metrics(): Promise<{ contentType: string; body: string }>
  /** GET /admin/instances (the cluster registry, src/cluster/member.ts). */
  instances(): Promise<ClusterView>
}

export class GatewayAdmin implements AdminApi {
  constructor(private readonly d: AdminFacadeDeps) {}

  /** Health of every trigger binding, in function order. */
  connections(): ConnectionHealth[] {
    const out: ConnectionHealth[] = []
    for (const u of this.d.units.values()) {
      const b = u.trigger
      if (!b) continue
      out.push({
        function: b.fn,
        kind: b.kind,
        ...(b.connection ? { connection: b.connection } : {}),
        up: b.health.up,
        ...(b.health.detail ? { detail: b.health.detail } : {}),
      })
    }
    return out
  }

  health(): HealthReport {
    const connections = this.connections()
    const hosts = this.d.parts.pool.info().map(({ id, up, pid, instances, restarts }) => ({ id, up, pid, instances, restarts }))
    const state = this.d.state()
    const store = this.d.parts.store.health()
    const status: HealthReport['status'] =
      state === 'up'
        ? connections.every((c) => c.up) && hosts.some((h) => h.up) && store.up
          ? 'up'
          : 'degraded'
        : state === 'starting'
          ? 'starting'
          : 'stopping'
    return { status, connections, hosts, store }
  }

  private info(name: string): FunctionInfo | undefined {
    const unit = this.d.units.get(name)
    if (!unit) return undefined
    const fn = unit.config
    const s = this.d.parts.scheduler.stats(name)
    const r = this.d.parts.router.stats(name)
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
      version: unit.code.hash,
      loadedAt: unit.loadedAt,
      versions: this.d.parts.scheduler.versions(name),
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
        direct: r.stats.direct,
      },
    }
    if (p) info.latencyMs = { p50: round(p.p50), p99: round(p.p99) }
    if (r.stats.lastColdStartMs !== undefined) info.lastColdStartMs = round(r.stats.lastColdStartMs)
    if (unit.reloadError) info.reloadError = unit.reloadError
    return info
  }

  functions(): FunctionInfo[] {
    return [...this.d.units.keys()].map((n) => this.info(n) as FunctionInfo)
  }

  function(name: string): (FunctionInfo & { recent: InvocationRecord[] }) | undefined {
    const info = this.info(name)
    return info && { ...info, recent: this.d.parts.router.stats(name).stats.recentInvocations() }
  }

  invoke(name: string, events: TriggerEvent[]): Promise<InvocationResult> {
    if (!this.d.units.has(name)) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${name}`)
    return this.d.parts.router.invoke(name, events)
  }

  listDeadLetters(q: DeadLetterQuery) {
    return this.d.parts.store.listDeadLetters(q)
  }

  getDeadLetter(id: string) {
    return this.d.parts.store.getDeadLetter(id)
  }

  deleteDeadLetter(id: string) {
    return this.d.parts.store.deleteDeadLetter(id)
  }

  /**
   * Delivers a dead letter's event to its function again, with a fresh set of attempts. The
   * letter is removed once the event is done, or replaced by the new letter if it fails again.
   */
  async replayDeadLetter(id: string) {
    const { store, router } = this.d.parts
    const notFound = () => new SluiceError('SLUICE_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter with id ${id}`)
    const first = await store.getDeadLetter(id)
    if (!first) throw notFound()
    if (!this.d.units.has(first.function))
      throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${first.function} of dead letter ${id} is no longer configured`)
    // The replay lease makes one replay run at a time across every instance sharing the store.
    const r = await withLease<Outcome>(store, replayLeaseKey(id), PROCESS_OWNER, REPLAY_LEASE, async () => {
      // Read again under the lease: a replay that just finished elsewhere has removed the letter.
      const dl = await store.getDeadLetter(id)
      if (!dl) throw notFound()
      const [outcome] = await router.deliver(dl.function, [dl.event])
      if (!outcome || outcome.status === 'aborted') return { value: { status: 'aborted' }, end: 'release' }
      await store.deleteDeadLetter(id)
      return { value: outcome, end: 'finish' }
    })
    if (!r.ran) {
      if (r.refused.finished || !(await store.getDeadLetter(id))) throw notFound()
      throw new SluiceError('SLUICE_ERR_DEAD_LETTER_REPLAYING', `dead letter ${id} is being replayed already (by ${r.refused.owner || 'another instance'})`)
    }
    return { outcome: r.value }
  }

  async createFunctionKey(fn: string, name: string): Promise<string> {
    const key = newKey()
    await this.d.parts.store.addFunctionKey(fn, name, hashKey(key))
    this.d.keys.invalidate(fn)
    return key
  }

  listFunctionKeys(fn: string): ReturnType<Store['listFunctionKeys']> {
    return this.d.parts.store.listFunctionKeys(fn)
  }

  async deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    const deleted = await this.d.parts.store.deleteFunctionKey(fn, name)
    this.d.keys.invalidate(fn)
    return deleted
  }

  hosts() {
    return this.d.parts.pool.info()
  }

  reload(): Promise<ReloadResult> {
    return this.d.reload()
  }

  metrics() {
    return this.d.metrics()
  }

  instances(): Promise<ClusterView> {
    return this.d.instances()
  }
}

const round = (n: number) => Math.round(n * 100) / 100
