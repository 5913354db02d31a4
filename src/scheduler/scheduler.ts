import { instanceChannel, type InstanceMessage } from '../channels.js'
import { SluiceError } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import type { SandboxPool } from '../sandbox/pool.js'
import { type FnState, type Inst, InstanceLease, type Lease, type LeaseOwner, type Pinned, unlisten, type Waiter } from './lease.js'

export type { Lease, Pinned } from './lease.js'

/** What the scheduler needs to know of a function. */
export interface FunctionSpec {
  name: string
  hash: string
  memoryMb: number
  outputs: string[]
  timeoutMs: number
  cpuTimeMs: number
  scale: { min: number; max: number; idleTimeoutMs: number }
}

export interface SchedulerOptions {
  gateway: number
  log: Logger
  /** Heap budget per worker host (sum of the memoryMb of its instances). */
  hostMemoryMb: number
  maxInstancesPerHost: number
}

export interface FunctionStats {
  instances: number
  busy: number
  idle: number
  waiting: number
}

/**
 * Decides how many instances each function has and where they run.
 *
 * Scaling is demand-driven: every batch the router has ready asks for a lease; an idle instance
 * serves it at once, else a new instance starts (up to scale.max) on the host with the fewest
 * instances of that function and room in its heap budget, else the request waits for the next
 * instance to come free. Instances idle for scale.idleTimeoutMs are stopped down to scale.min.
 * When hosts are full, idle instances of other functions are evicted (least recently used).
 */
export class Scheduler {
  private readonly fns = new Map<string, FnState>()
  private readonly hostLoad = new Map<number, { memoryMb: number; count: number }>()
  private reaper: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly pool: SandboxPool,
    private readonly opts: SchedulerOptions,
  ) {
    pool.on('host-down', (hostId: number) => this.onHostDown(hostId))
    pool.on('host-up', () => {
      this.fillMinimums()
      // Requests that found no host (all down or full) can start instances now.
      for (const f of this.fns.values()) if (f.waiters.length > 0) this.serveWaiters(f)
    })
    pool.on('instance-lost', (inst: number) => this.onInstanceLost(inst))
  }

  register(spec: FunctionSpec): void {
    this.fns.set(spec.name, { spec, instances: new Set(), idle: [], waiters: [], startFailures: 0 })
  }

  /**
   * Replaces a registered function's spec (hot reload); registers it when unknown. When the code
   * (`hash`) or `memoryMb` changed, instances of the previous version are never leased again: idle
   * ones stop now, busy ones finish their batch and stop when released. New leases start
   * instances of the new version. Scale and deadlines apply from the next lease.
   */
  update(spec: FunctionSpec): void {
    const f = this.fns.get(spec.name)
    if (!f) return this.register(spec)
    const previous = f.spec.hash
    f.spec = spec
    f.startFailures = 0
    for (const inst of [...f.idle]) if (this.stale(inst)) this.remove(inst, 'stop')
    if (previous !== spec.hash) this.forgetIfUnused(previous)
    this.serveWaiters(f)
    this.fillMinimums()
  }

  /**
   * Forgets a function (hot reload removed it; the router has drained it first). Idle instances
   * stop now, busy ones when released; waiting requests fail with SLUICE_ERR_FUNCTION_NOT_FOUND.
   */
  unregister(name: string): void {
    const f = this.fns.get(name)
    if (!f) return
    this.fns.delete(name)
    f.removed = true
    for (const w of f.waiters.splice(0)) {
      unlisten(w)
      w.reject(new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${name} was removed`, { context: { function: name } }))
    }
    for (const inst of [...f.idle]) this.remove(inst, 'stop')
    if (f.instances.size === 0) this.forgetIfUnused(f.spec.hash)
  }

  /** Instances of `fn` per code version (bundle hash): more than one while old instances drain. */
  versions(fn: string): Record<string, number> {
    const out: Record<string, number> = {}
    for (const i of this.fns.get(fn)?.instances ?? []) out[i.spec.hash] = (out[i.spec.hash] ?? 0) + 1
    return out
  }

  /** Lets the pool drop a previous code version once no function uses it and no instance runs it. */
  private forgetIfUnused(hash: string): void {
    for (const f of this.fns.values()) {
      if (f.spec.hash === hash) return
      for (const i of f.instances) if (i.spec.hash === hash) return
    }
    this.pool.forgetCode(hash)
  }

  /** An instance of a previous code version or heap size: it runs no further batch. */
  private stale(inst: Inst): boolean {
    return inst.spec.hash !== inst.fn.spec.hash || inst.spec.memoryMb !== inst.fn.spec.memoryMb
  }

  start(): void {
    this.fillMinimums()
    const period = Math.max(50, Math.min(1000, ...[...this.fns.values()].map((f) => f.spec.scale.idleTimeoutMs / 4)))
    this.reaper = setInterval(() => this.reap(), period)
    this.reaper.unref()
  }

  stats(fn: string): FunctionStats {
    const f = this.fns.get(fn)
    if (!f) return { instances: 0, busy: 0, idle: 0, waiting: 0 }
    return { instances: f.instances.size, busy: f.instances.size - f.idle.length, idle: f.idle.length, waiting: f.waiters.length }
  }

  /**
   * Claims an instance of `fn`, starting one if the function may grow. Rejects with
   * SLUICE_ERR_SANDBOX_CLOSED after close, or the abort reason when `signal` aborts.
   */
  acquire(fn: string, signal?: AbortSignal): Promise<Lease> {
    const f = this.fns.get(fn)
    if (!f) return Promise.reject(new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${fn}`))
    if (this.closed) return Promise.reject(new SluiceError('SLUICE_ERR_SANDBOX_CLOSED', 'the scheduler is shut down'))
    const since = performance.now()
    const free = this.free(f)
    if (free) return Promise.resolve(this.lease(free, since))
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, since }
      if (signal) {
        if (signal.aborted) return reject(signal.reason)
        w.signal = signal
        w.onAbort = () => {
          const i = f.waiters.indexOf(w)
          if (i >= 0) f.waiters.splice(i, 1)
          reject(signal.reason)
        }
        signal.addEventListener('abort', w.onAbort, { once: true })
      }
      f.waiters.push(w)
    })
  }

  /**
   * Pins an instance of `fn` on a host not in `exclude`: an idle one, else a new one (within
   * scale.max and the hosts' room), once it is up. Rejects with SLUICE_ERR_SANDBOX_UNAVAILABLE when
   * there is none to pin, or with the instance's start error.
   */
  async pin(fn: string, exclude: ReadonlySet<number> = new Set()): Promise<Pinned> {
    const f = this.fns.get(fn)
    if (!f || f.removed || this.closed) throw new SluiceError('SLUICE_ERR_SANDBOX_UNAVAILABLE', `function ${fn} is not running`, { retriable: true })
    let inst = f.idle.find((i) => i.pins === 0 && !exclude.has(i.handle.hostId) && !this.stale(i))
    if (!inst) {
      inst = this.tryStart(f, exclude)
      if (!inst) throw new SluiceError('SLUICE_ERR_SANDBOX_UNAVAILABLE', `no room for another instance of ${fn}`, { retriable: true })
      f.idle.push(inst)
      this.serveWaiters(f)
    }
    const held = inst
    held.pins++
    let pinned = true
    const unpin = () => {
      if (!pinned) return
      pinned = false
      held.pins--
      held.lastUsed = Date.now()
    }
    try {
      await held.handle.ready
    } catch (e) {
      unpin()
      throw e
    }
    const current = () => held.fn.instances.has(held) && this.leases.isCurrent(held)
    if (!current()) {
      unpin()
      throw new SluiceError('SLUICE_ERR_SANDBOX_UNAVAILABLE', `the instance of ${fn} stopped before it was pinned`, { retriable: true })
    }
    return { fn, inst: held.handle.inst, hostId: held.handle.hostId, hash: held.spec.hash, current, unpin }
  }

  private lease(inst: Inst, since: number): Lease {
    inst.busy = true
    const coldStart = inst.fresh
    inst.fresh = false
    return new InstanceLease(this.leases, inst, coldStart, performance.now() - since)
  }

  /**
   * The instance for the next lease: an idle one, else a new one, else an idle one that is pinned
   * (it serves direct HTTP requests too, so it is taken only when nothing else is free).
   */
  private free(f: FnState): Inst | undefined {
    return this.takeIdle(f, false) ?? this.tryStart(f) ?? this.takeIdle(f, true)
  }

  /** The most recently used idle instance that is not pinned (or, with `pinned`, any). */
  private takeIdle(f: FnState, pinned: boolean): Inst | undefined {
    for (let i = f.idle.length - 1; i >= 0; i--) {
      const inst = f.idle[i] as Inst
      if (pinned || inst.pins === 0) {
        f.idle.splice(i, 1)
        return inst
      }
    }
    return undefined
  }

  /** What a lease calls back (one object for all of them: a lease allocates no closures). */
  private readonly leases: LeaseOwner = {
    run: async (inst, spec, eventsJson, invocationId) => {
      const r = await this.pool.run(inst.handle, eventsJson, invocationId, spec.timeoutMs, spec.cpuTimeMs)
      if (r.lost) this.remove(inst, 'lost')
      return r
    },
    release: (inst) => this.onRelease(inst),
    isCurrent: (inst) => !inst.fn.removed && !this.stale(inst),
  }

  private onRelease(inst: Inst): void {
    inst.busy = false
    inst.lastUsed = Date.now()
    const f = inst.fn
    if (!f.instances.has(inst)) {
      // Lost while leased: a waiter may take a new instance in its place.
      this.serveWaiters(f)
      return
    }
    if (f.removed || this.stale(inst)) {
      // A previous version drains: it never takes another batch (remove serves the waiters).
      this.remove(inst, 'stop')
      return
    }
    const w = this.nextWaiter(f)
    if (w) {
      w.resolve(this.lease(inst, w.since))
      return
    }
    f.idle.push(inst)
  }

  private nextWaiter(f: FnState): Waiter | undefined {
    const w = f.waiters.shift()
    if (w) unlisten(w)
    return w
  }

  /** Hands new instances to waiting requests while the function may grow. */
  private serveWaiters(f: FnState): void {
    while (f.waiters.length > 0) {
      const inst = this.free(f)
      if (!inst) return
      const w = this.nextWaiter(f)
      if (!w) {
        f.idle.push(inst)
        return
      }
      w.resolve(this.lease(inst, w.since))
    }
  }

  private load(hostId: number): { memoryMb: number; count: number } {
    let l = this.hostLoad.get(hostId)
    if (!l) {
      l = { memoryMb: 0, count: 0 }
      this.hostLoad.set(hostId, l)
    }
    return l
  }

  /** Picks a host (not in `exclude`) for one more instance of `f`: fewest instances of f, then least heap used. */
  private pickHost(f: FnState, exclude?: ReadonlySet<number>): number | undefined {
    const mine = new Map<number, number>()
    for (const i of f.instances) mine.set(i.handle.hostId, (mine.get(i.handle.hostId) ?? 0) + 1)
    let best: number | undefined
    let bestKey: [number, number] = [Infinity, Infinity]
    for (const id of this.pool.hostIds()) {
      if (exclude?.has(id)) continue
      const l = this.load(id)
      if (l.memoryMb + f.spec.memoryMb > this.opts.hostMemoryMb || l.count >= this.opts.maxInstancesPerHost) continue
      const key: [number, number] = [mine.get(id) ?? 0, l.memoryMb]
      if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) {
        best = id
        bestKey = key
      }
    }
    return best
  }

  private tryStart(f: FnState, exclude?: ReadonlySet<number>): Inst | undefined {
    if (this.closed || f.instances.size >= f.spec.scale.max) return undefined
    let host = this.pickHost(f, exclude)
    if (host === undefined && this.evictFor(f)) host = this.pickHost(f, exclude)
    if (host === undefined) return undefined
    const spec = f.spec
    const handle = this.pool.create(host, {
      fn: spec.name,
      hash: spec.hash,
      memoryMb: spec.memoryMb,
      outputs: spec.outputs,
      initTimeoutMs: spec.timeoutMs,
    })
    const inst: Inst = { handle, fn: f, spec, busy: false, lastUsed: Date.now(), fresh: true, pins: 0 }
    f.instances.add(inst)
    const l = this.load(host)
    l.memoryMb += spec.memoryMb
    l.count++
    handle.ready.then(
      (r) => {
        f.startFailures = 0
        this.publish(f, 'start', host, r.ms)
        this.opts.log.debug({ function: spec.name, host, ms: Math.round(r.ms * 100) / 100, prewarmed: r.prewarmed }, 'instance started')
      },
      (e: Error) => {
        f.startFailures++
        this.opts.log.warn({ function: spec.name, host, err: e.message }, 'instance failed to start')
        this.remove(inst, 'lost')
      },
    )
    return inst
  }

  /** Stops the least recently used idle instance (above its function's min) to make room. */
  private evictFor(f: FnState): boolean {
    let victim: Inst | undefined
    for (const other of this.fns.values()) {
      if (other === f || other.instances.size <= other.spec.scale.min) continue
      for (const i of other.idle) if (i.pins === 0 && (!victim || i.lastUsed < victim.lastUsed)) victim = i
    }
    if (!victim) return false
    this.remove(victim, 'stop')
    return true
  }

  private remove(inst: Inst, why: 'stop' | 'lost'): void {
    const f = inst.fn
    if (!f.instances.delete(inst)) return
    const i = f.idle.indexOf(inst)
    if (i >= 0) f.idle.splice(i, 1)
    const l = this.load(inst.handle.hostId)
    l.memoryMb -= inst.handle.memoryMb
    l.count--
    if (why === 'stop') this.pool.destroy(inst.handle)
    if (f.removed || inst.spec.hash !== f.spec.hash) this.forgetIfUnused(inst.spec.hash)
    this.publish(f, why, inst.handle.hostId)
    // Capacity came free: waiting requests of any function may now start an instance.
    for (const other of this.fns.values()) if (other.waiters.length > 0) this.serveWaiters(other)
  }

  private publish(f: FnState, action: InstanceMessage['action'], hostId: number, ms?: number): void {
    if (instanceChannel.hasSubscribers) {
      const m: InstanceMessage = { gateway: this.opts.gateway, function: f.spec.name, action, instances: f.instances.size, hostId }
      if (ms !== undefined) m.ms = ms
      instanceChannel.publish(m)
    }
  }

  private onInstanceLost(instId: number): void {
    for (const f of this.fns.values()) {
      for (const inst of f.instances) {
        if (inst.handle.inst === instId) {
          // Busy instances are removed by their lease's run(); idle ones here.
          if (!inst.busy) this.remove(inst, 'lost')
          return
        }
      }
    }
  }

  private onHostDown(hostId: number): void {
    for (const f of this.fns.values()) {
      for (const inst of [...f.instances]) if (inst.handle.hostId === hostId && !inst.busy) this.remove(inst, 'lost')
    }
    this.hostLoad.delete(hostId)
  }

  private fillMinimums(): void {
    if (this.closed) return
    for (const f of this.fns.values()) {
      while (f.instances.size < f.spec.scale.min) {
        const inst = this.tryStart(f)
        if (!inst) break
        // Started ahead of demand: its first batch is not a cold start.
        inst.fresh = false
        f.idle.push(inst)
      }
    }
  }

  private reap(): void {
    const now = Date.now()
    for (const f of this.fns.values()) {
      const { min, idleTimeoutMs } = f.spec.scale
      // Oldest first: idle is used as a stack, so the front has waited longest.
      for (const inst of [...f.idle]) {
        if (f.instances.size <= min) break
        if (inst.pins === 0 && now - inst.lastUsed >= idleTimeoutMs) this.remove(inst, 'stop')
      }
    }
    this.fillMinimums()
  }

  /** Stops scheduling. Waiting requests fail with SLUICE_ERR_SANDBOX_CLOSED. Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.reaper) clearInterval(this.reaper)
    for (const f of this.fns.values()) {
      for (const w of f.waiters.splice(0)) {
        unlisten(w)
        w.reject(new SluiceError('SLUICE_ERR_SANDBOX_CLOSED', 'the gateway is shutting down'))
      }
    }
  }
}
