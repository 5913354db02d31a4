/**
 * What the scheduler hands out: a lease on one instance for one batch (Lease, InstanceLease) and a
 * pin that keeps an instance for direct HTTP (Pinned); with the scheduler's own records of
 * instances, functions and waiting requests.
 */
import type { InstanceHandle, RunResult } from '../sandbox/pool.js'
import type { FunctionSpec } from './scheduler.js'

export interface Inst {
  handle: InstanceHandle
  fn: FnState
  /** The spec the instance was started with: its code version is `spec.hash`. */
  spec: FunctionSpec
  busy: boolean
  lastUsed: number
  /** Not yet used: the first run on it is a cold start. */
  fresh: boolean
  /** Pins held by direct HTTP (src/gateway/direct-http.ts): not reaped or evicted while held. */
  pins: number
}

/**
 * An instance a worker host serves HTTP requests on directly. It stays in the scheduler's pool
 * (batches may still be leased to it; the host runs one call at a time per isolate) but is not
 * stopped for idleness or evicted while pinned.
 */
export interface Pinned {
  fn: string
  inst: number
  hostId: number
  /** Bundle hash of the instance's code. */
  hash: string
  /** False once the instance is gone, its function removed, or a reload replaced its code. */
  current(): boolean
  /** Idempotent; the instance then idles out as any other. */
  unpin(): void
}

export interface Waiter {
  resolve(lease: Lease): void
  reject(e: Error): void
  since: number
  signal?: AbortSignal
  onAbort?: () => void
}

export interface FnState {
  spec: FunctionSpec
  instances: Set<Inst>
  idle: Inst[]
  waiters: Waiter[]
  /** Instance starts that failed in a row (backs off further starts). */
  startFailures: number
  /** Unregistered: its remaining (busy) instances stop when released. */
  removed?: boolean
}

/**
 * A claim on one instance for one batch. Call `run` once, then `release` (always, also after an
 * error): an instance runs one batch at a time.
 */
export interface Lease {
  readonly fn: string
  readonly coldStart: boolean
  readonly hostId: number
  /** How long `acquire` waited for the instance. */
  readonly waitMs: number
  run(eventsJson: string, invocationId: string): Promise<RunResult>
  release(): void
  /**
   * False once a reload replaced the instance's code version (or removed the function) after the
   * lease was granted: start no new batch on it; release it and acquire again.
   */
  isCurrent(): boolean
}

/**
 * Stops a waiter listening to its signal. A signal may outlive the request (the HTTP trigger's is
 * one per connection): a listener left behind would pile up on it.
 */
export function unlisten(w: Waiter): void {
  if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort)
}

export interface LeaseOwner {
  run(inst: Inst, spec: FunctionSpec, eventsJson: string, invocationId: string): Promise<RunResult>
  release(inst: Inst): void
  isCurrent(inst: Inst): boolean
}

export class InstanceLease implements Lease {
  readonly fn: string
  readonly hostId: number
  /** The spec when the lease was granted: its deadlines apply to the run. */
  private readonly spec: FunctionSpec
  private released = false

  constructor(
    private readonly owner: LeaseOwner,
    readonly inst: Inst,
    readonly coldStart: boolean,
    readonly waitMs: number,
  ) {
    this.spec = inst.fn.spec
    this.fn = this.spec.name
    this.hostId = inst.handle.hostId
  }

  run(eventsJson: string, invocationId: string): Promise<RunResult> {
    return this.owner.run(this.inst, this.spec, eventsJson, invocationId)
  }

  release(): void {
    if (this.released) return
    this.released = true
    this.owner.release(this.inst)
  }

  isCurrent(): boolean {
    return this.owner.isCurrent(this.inst)
  }
}
