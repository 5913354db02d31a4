/**
 * This gateway instance in the cluster registry: it claims its instance id at start (waiting out
 * the heartbeat of a predecessor with the same id, refusing to start when that one is live: see
 * claim.ts), heartbeats every instance.heartbeatMs with its report (connections, backlog,
 * in-flight, broker sessions), lists the instances sharing the store (GET /admin/instances), warns
 * about set-ups that several live instances break, and hands dead instances to the takeover
 * coordinator.
 *
 * Two live processes with one id despite the start check (one was cut off from the store for
 * longer than instance.expiryMs while the other started): each heartbeat finds the row written by
 * the other, so from the second such heartbeat in a row both log SLUICE_ERR_INSTANCE_DUPLICATE_ID
 * (once a minute) and keep running: stopping one could take down the healthy instance.
 */
import { hostname } from 'node:os'
import { toInfo } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import type { InstanceRow, Store } from '../store/store.js'
import { waitForInstanceId } from './claim.js'
import { sluiceVersion, type InstanceSettings } from './identity.js'
import type { TakeoverCoordinator } from './takeover.js'
import type { ClusterView, ClusterWarning, InstanceReport, InstanceView } from './types.js'
import { clusterWarnings } from './warnings.js'

/** Rows of instances silent this long are deleted; the view shows expired ones for an hour. */
const FORGET_MS = 24 * 3600_000
const RECENT_MS = 3600_000
const LOG_EVERY_MS = 60_000

/** What the gateway reports about itself at each heartbeat. */
export type LiveReport = Pick<InstanceReport, 'state' | 'connections' | 'backlog' | 'inflight' | 'sessions' | 'url'>

export interface ClusterMemberDeps {
  store: Store
  settings: InstanceSettings
  /** This run of the instance (src/cluster/identity.ts newIncarnation). */
  incarnation: string
  config: Parameters<typeof clusterWarnings>[0]
  unshared: InstanceReport['unshared']
  log: Logger
  report(): LiveReport
  takeover?: TakeoverCoordinator
}

export class ClusterMember {
  private readonly startedAt = new Date().toISOString()
  private timer: NodeJS.Timeout | undefined
  private beats = 0
  /** Consecutive heartbeats that found another process's fresh row. */
  private foreign = 0
  /** Set by claim(): heartbeats run; start() adds the registry view, warnings and takeovers. */
  private claimed = false
  private running = false
  /** The start was refused: the row belongs to the live holder, so stop() must not write it. */
  private refused = false
  private stopped = false
  private stopPromise: Promise<void> | undefined
  private beating: Promise<void> | undefined
  private duplicateAt = 0
  private lastFailureLog = 0
  private current: ClusterWarning[] = []
  private readonly logged = new Set<string>()

  constructor(private readonly d: ClusterMemberDeps) {}

  get id(): string {
    return this.d.settings.id
  }

  /**
   * Claims the instance id before anything consumes: waits out the heartbeat of another process
   * that held it (see claim.ts), then writes this incarnation's first heartbeat (state starting) and
   * keeps beating, so a second process started meanwhile sees a live holder. Throws
   * SLUICE_ERR_INSTANCE_DUPLICATE_ID when the holder is live. A store that is down is logged.
   */
  async claim(): Promise<void> {
    if (this.claimed) return
    const { store, settings, incarnation, log } = this.d
    const deps = { store, settings, incarnation, log, stopped: () => this.stopped }
    try {
      let { waitedOut } = await waitForInstanceId(deps)
      for (;;) {
        if (this.stopped) return
        let prev: { incarnation: string; ageMs: number } | undefined
        try {
          prev = (await store.heartbeatInstance(settings.id, incarnation, this.doc())).previous
          this.beats++
        } catch (e) {
          this.heartbeatFailed(e)
          break
        }
        if (!prev || prev.incarnation === incarnation || prev.incarnation === waitedOut || prev.ageMs >= settings.expiryMs) break
        // Another process wrote the row between our check and this write (both started at once):
        // wait for its next beat as for any holder.
        ;({ waitedOut } = await waitForInstanceId(deps, { incarnation: prev.incarnation, ageMs: prev.ageMs }))
      }
    } catch (e) {
      this.refused = true
      throw e
    }
    this.claimed = true
    this.schedule()
  }

  /**
   * Registers the running gateway: claims the id first when claim() was not called, then beats
   * at once (its report lists the triggers' sessions) and from now on also reads the registry,
   * warns and takes dead instances' sessions over.
   */
  async start(): Promise<void> {
    await this.claim()
    if (this.stopped) return
    this.running = true
    // The claim's timer: a beat in flight reschedules when it ends, so clear again after it.
    clearTimeout(this.timer)
    await this.beating
    clearTimeout(this.timer)
    this.beating = this.beat()
    await this.beating
    this.beating = undefined
    this.schedule()
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.beating = this.beat().finally(() => {
        this.beating = undefined
        this.schedule()
      })
    }, this.d.settings.heartbeatMs)
    this.timer.unref()
  }

  private doc(stateOverride?: InstanceReport['state']): InstanceReport {
    const r = this.d.report()
    return {
      version: sluiceVersion(),
      host: hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      ...r,
      ...(stateOverride ? { state: stateOverride } : {}),
      unshared: this.d.unshared,
    }
  }

  private async beat(): Promise<void> {
    const { store, settings } = this.d
    try {
      const r = await store.heartbeatInstance(settings.id, this.d.incarnation, this.doc())
      this.beats++
      const prev = r.previous
      // One foreign row is what a process that lost a start race leaves before it backs off.
      if (prev && prev.incarnation !== this.d.incarnation && prev.ageMs < settings.expiryMs) {
        if (++this.foreign >= 2) this.duplicate(prev.ageMs)
      } else this.foreign = 0
      if (!this.running) return
      const rows = await store.listInstances(FORGET_MS)
      this.warn(rows)
      this.d.takeover?.consider(rows)
    } catch (e) {
      this.heartbeatFailed(e)
    }
  }

  private heartbeatFailed(e: unknown): void {
    if (Date.now() - this.lastFailureLog < LOG_EVERY_MS) return
    this.lastFailureLog = Date.now()
    const err = toInfo(e, 'SLUICE_ERR_STORE_DOWN')
    this.d.log.warn(
      { instance: this.d.settings.id, err: { code: err.code, message: err.message } },
      'cluster heartbeat failed; other instances may count this one as dead until it succeeds again',
    )
  }

  private duplicate(ageMs: number): void {
    const first = Date.now() - this.duplicateAt > LOG_EVERY_MS
    this.duplicateAt = Date.now()
    if (!first) return
    this.d.log.error(
      { code: 'SLUICE_ERR_INSTANCE_DUPLICATE_ID', instance: this.d.settings.id, otherHeartbeatMsAgo: ageMs },
      `another live gateway instance uses instance id ${this.d.settings.id}: give every instance its own instance.id (or SLUICE_INSTANCE_ID); both keep running, but they take MQTT sessions and Event Hubs partitions from each other`,
    )
  }

  private live(rows: readonly InstanceRow[]): InstanceRow[] {
    return rows.filter((r) => r.ageMs <= this.d.settings.expiryMs && (r.doc as Partial<InstanceReport>).state !== 'stopped')
  }

  private warn(rows: readonly InstanceRow[]): void {
    const others = this.live(rows)
      .filter((r) => r.id !== this.d.settings.id)
      .map((r) => ({ id: r.id, report: { unshared: (r.doc as Partial<InstanceReport>).unshared ?? [] } }))
    const list = clusterWarnings(this.d.config, { unshared: this.d.unshared }, others)
    if (Date.now() - this.duplicateAt < this.d.settings.expiryMs) {
      list.unshift({
        code: 'SLUICE_ERR_INSTANCE_DUPLICATE_ID',
        message: `another live gateway instance uses instance id ${this.d.settings.id}: give every instance its own instance.id`,
      })
    }
    this.current = list
    for (const w of list) {
      const key = `${w.code}:${w.function ?? ''}`
      if (this.logged.has(key) || w.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID') continue
      this.logged.add(key)
      this.d.log.warn(
        { code: w.code, ...(w.function ? { function: w.function } : {}), ...(w.docs ? { docs: w.docs } : {}), live: others.length + 1 },
        w.message,
      )
    }
  }

  /** The warnings of the latest heartbeat (for the dashboard). */
  warnings(): ClusterWarning[] {
    return this.current
  }

  /** GET /admin/instances: live instances, and those expired or stopped within the last hour. */
  async view(): Promise<ClusterView> {
    const { settings, store } = this.d
    const base = { self: settings.id, heartbeatMs: settings.heartbeatMs, expiryMs: settings.expiryMs, store: store.health().kind, warnings: this.current }
    let rows: InstanceRow[]
    try {
      rows = await store.listInstances(FORGET_MS)
    } catch (e) {
      const self: InstanceRow = { id: settings.id, incarnation: this.d.incarnation, doc: this.doc(), heartbeatAt: new Date().toISOString(), ageMs: 0 }
      return { ...base, instances: [this.toView(self)], error: toInfo(e, 'SLUICE_ERR_STORE_DOWN').message }
    }
    const instances = rows.map((r) => this.toView(r)).filter((v) => v.status === 'live' || v.heartbeatAgeMs < RECENT_MS)
    return { ...base, instances }
  }

  private toView(r: InstanceRow): InstanceView {
    const { sessions, unshared: _u, ...doc } = r.doc as InstanceReport
    const status: InstanceView['status'] = doc.state === 'stopped' ? 'stopped' : r.ageMs > this.d.settings.expiryMs ? 'expired' : 'live'
    return {
      id: r.id,
      ...doc,
      status,
      self: r.id === this.d.settings.id && r.incarnation === this.d.incarnation,
      lastHeartbeat: r.heartbeatAt,
      heartbeatAgeMs: r.ageMs,
      sessions: (sessions ?? []).map((s) => s.clientId),
    }
  }

  /** Aborts a session takeover in flight (first step of the gateway's stop). */
  async stopTakeovers(): Promise<void> {
    await this.d.takeover?.stop()
  }

  /** Stops heartbeating and takeovers and records this instance as stopped. Idempotent. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopped = true
      clearTimeout(this.timer)
      await this.d.takeover?.stop()
      await this.beating
      // A gateway whose start failed before it registered leaves no row behind, and one refused
      // for a duplicate id leaves the live holder's row alone.
      if (this.beats > 0 && !this.refused)
        await this.d.store.heartbeatInstance(this.d.settings.id, this.d.incarnation, this.doc('stopped')).catch(() => undefined)
    })()
    return this.stopPromise
  }
}
