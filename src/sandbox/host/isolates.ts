import ivm from 'isolated-vm'
import type { ErrorCode, ErrorInfo } from '../../errors.js'
import type { InstanceSpec } from '../protocol.js'
import { BOOTSTRAP } from './bootstrap.js'

/**
 * The bootstrap's run (see bootstrap.ts): the envelope in a one-element array, `[null]` while the
 * invocation is pending; `run(null)` returns a promise of the pending envelope.
 */
type RunFn = (eventsJson: string | null, invocationId?: string, deadline?: number) => [string | null] | Promise<string | null>

/** A blank isolate with the bootstrap run, waiting for a function (a "placeholder"). */
interface Blank {
  isolate: ivm.Isolate
  context: ivm.Context
  install: ivm.Reference<(factory: unknown, fn: string, outputs: string[]) => RunFn>
}

export interface Instance {
  spec: InstanceSpec
  isolate: ivm.Isolate
  context: ivm.Context
  run: ivm.Reference<RunFn>
  busy: boolean
  /** Runs start on the host's thread (see Isolates.run); false while its runs take too long. */
  inline: boolean
}

export interface RunOutcome {
  envelope?: string
  error?: ErrorInfo
  lost: boolean
  cpuMs: number
}

/** A run on its way, held to its limits by the watchdog. */
interface Watched {
  instance: Instance
  cpuStart: bigint
  /** performance.now() at the wall deadline. */
  wallAt: number
  timeoutMs: number
  cpuTimeMs: number
  stopped: ErrorInfo | undefined
  wake: (() => void) | undefined
}

/**
 * How long a run may hold the host's thread before it moves to isolated-vm's thread pool. A batch
 * of 100 small events takes well under a millisecond; other instances of the host wait at most
 * this long behind a run that needs more.
 */
const SYNC_BUDGET_MS = 20

/** How often the watchdog checks the wall deadline and CPU time of runs on the thread pool. */
const WATCH_MS = 10

/** The envelope in the array run() returned (see RunFn); null while pending, undefined if malformed. */
const envelopeOf = (box: unknown): unknown => (Array.isArray(box) ? box[0] : undefined)

/** isolated-vm sets `cachedData` on the Script when asked to produce it (not in its typings). */
const cacheOf = (s: ivm.Script) => (s as unknown as { cachedData?: ivm.ExternalCopy<ArrayBuffer> }).cachedData

/** Quiet time before a blank isolate is made. */
const REFILL_QUIET_MS = 5

const info = (code: ErrorCode, message: string, retriable: boolean): ErrorInfo => ({ code, message, retriable })

/**
 * Isolates of one worker host: a pool of blank isolates per heap size, compiled code with V8 code
 * caches shared across instances of a function, and the instances themselves.
 */
export class Isolates {
  private readonly code = new Map<string, { source: string; cache?: ivm.ExternalCopy<ArrayBuffer> }>()
  private readonly blanks = new Map<number, Blank[]>()
  private bootstrapCache: ivm.ExternalCopy<ArrayBuffer> | undefined
  private prewarmSizes: number[] = []
  private prewarmCount = 0
  private refillTimer: NodeJS.Timeout | undefined
  private readonly watchdog = new Watchdog()

  constructor(private readonly onFatal: (message: string) => void) {}

  addCode(hash: string, source: string): void {
    if (!this.code.has(hash)) this.code.set(hash, { source })
  }

  /**
   * Drops a bundle and its code cache (the gateway forgot it: a reload replaced it and its last
   * instance is gone). Running instances keep what they compiled; the gateway sends the code
   * again before it creates an instance of it.
   */
  forgetCode(hash: string): void {
    this.code.delete(hash)
  }

  /** How many bundles this host holds (tests and the host's report). */
  get codeCount(): number {
    return this.code.size
  }

  setPrewarm(sizes: number[], count: number): void {
    this.prewarmSizes = sizes
    this.prewarmCount = count
    this.refill()
  }

  private blank(memoryMb: number): Blank {
    const isolate = new ivm.Isolate({ memoryLimit: memoryMb, onCatastrophicError: (m: string) => this.onFatal(m) })
    try {
      const context = isolate.createContextSync()
      const script = isolate.compileScriptSync(BOOTSTRAP, {
        filename: 'sluice:bootstrap',
        ...(this.bootstrapCache ? { cachedData: this.bootstrapCache } : { produceCachedData: true }),
      })
      if (!this.bootstrapCache) this.bootstrapCache = cacheOf(script)
      const install = script.runSync(context, { reference: true }) as Blank['install']
      script.release()
      return { isolate, context, install }
    } catch (e) {
      isolate.dispose()
      throw e
    }
  }

  /**
   * Tops up the blank pools off the hot path: a blank isolate takes about a millisecond of this
   * thread, so it is made only after the host has had a quiet moment, never between a cold
   * start's creation and its first run.
   */
  private refill(): void {
    if (this.refillTimer) clearTimeout(this.refillTimer)
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined
      for (const size of this.prewarmSizes) {
        const pool = this.blanks.get(size) ?? []
        this.blanks.set(size, pool)
        if (pool.length < this.prewarmCount) {
          try {
            pool.push(this.blank(size))
          } catch {
            return
          }
          this.refill()
          return
        }
      }
    }, REFILL_QUIET_MS)
  }

  /** Creates an instance: takes a blank isolate (or makes one), compiles and runs the module. */
  async create(spec: InstanceSpec): Promise<{ instance: Instance; prewarmed: boolean }> {
    const code = this.code.get(spec.hash)
    if (!code) throw Object.assign(new Error(`no code registered for ${spec.fn}`), { code: 'SLUICE_ERR_SANDBOX_INSTANCE_START' })
    const pooled = this.blanks.get(spec.memoryMb)?.pop()
    if (pooled) this.refill()
    const b = pooled ?? this.blank(spec.memoryMb)
    try {
      // Compiling and evaluating the wrapper runs no user code, so the sync calls are short and
      // save two thread hops on every cold start; the module body runs in install(), async.
      const script = b.isolate.compileScriptSync(`(function () {\n${code.source}\nreturn ${'__sluice_fn'};\n})`, {
        filename: `function:${spec.fn}`,
        lineOffset: -1,
        ...(code.cache ? { cachedData: code.cache } : { produceCachedData: true }),
      })
      if (!code.cache) code.cache = cacheOf(script)
      const factory = script.runSync(b.context, { reference: true }) as ivm.Reference<unknown>
      script.release()
      const run = (await b.install.apply(undefined, [factory.derefInto(), spec.fn, new ivm.ExternalCopy(spec.outputs).copyInto()], {
        timeout: spec.initTimeoutMs,
        result: { reference: true },
      })) as ivm.Reference<RunFn>
      factory.release()
      b.install.release()
      return { instance: { spec, isolate: b.isolate, context: b.context, run, busy: false, inline: true }, prewarmed: pooled !== undefined }
    } catch (e) {
      if (!b.isolate.isDisposed) b.isolate.dispose()
      throw e
    }
  }

  /**
   * Runs one batch. Enforces the wall deadline (also across awaits: the isolate is disposed when
   * it passes) and the CPU limit. `lost` tells the caller the instance is gone.
   *
   * A run starts on this thread (applySync) with a short budget: most batches finish well within
   * it, and then the call costs a few microseconds of this process instead of a hand-over to
   * isolated-vm's thread pool and back (issue 11). The budget bounds how long one instance holds
   * this thread, and so the other instances of the host. An isolate runs its microtasks when the
   * call returns, inside the timed part, so an `await` followed by a loop is bounded as well. A
   * run that passes the budget is stopped and run again from the start on the thread pool, with
   * its full limits (an isolate has no I/O: the stopped attempt left nothing outside it), and the
   * instance stays on the thread pool until one of its runs fits in a quarter of the budget.
   */
  async run(instance: Instance, events: string, invocationId: string, timeoutMs: number, cpuTimeMs: number): Promise<RunOutcome> {
    const { isolate } = instance
    if (instance.inline && !instance.busy) {
      const budget = Math.min(SYNC_BUDGET_MS, timeoutMs, cpuTimeMs)
      const t0 = performance.now()
      const cpuStart = isolate.cpuTime
      let box: unknown
      instance.busy = true
      try {
        box = instance.run.applySync(undefined, [events, invocationId, Date.now() + timeoutMs], { timeout: budget, result: { copy: true } })
      } catch (e) {
        instance.busy = false
        const cpuMs = cpuSince(instance, cpuStart)
        const elapsed = performance.now() - t0
        const overBudget = !isolate.isDisposed && /timed out/i.test(messageOf(e))
        if (overBudget && elapsed < timeoutMs && cpuMs < cpuTimeMs) {
          // Past the budget, within its limits: again, on the thread pool.
          instance.inline = false
          return this.pooled(instance, events, invocationId, timeoutMs, cpuTimeMs)
        }
        const error =
          overBudget && cpuMs >= cpuTimeMs && elapsed < timeoutMs ? cpuLimit(instance.spec, cpuMs, cpuTimeMs) : classify(e, instance.spec, timeoutMs)
        if (!isolate.isDisposed) isolate.dispose()
        return { error, lost: true, cpuMs }
      }
      // Settled inside the call, unless it waits for something that never comes (an isolate has
      // nothing to wait on): then it is watched like a run on the thread pool.
      const envelope = envelopeOf(box)
      if (envelope === null) return this.watched(instance, this.later(instance), cpuStart, t0, timeoutMs, cpuTimeMs)
      instance.busy = false
      return this.settled(instance, envelope, cpuSince(instance, cpuStart))
    }
    return this.pooled(instance, events, invocationId, timeoutMs, cpuTimeMs)
  }

  /** A run on isolated-vm's thread pool (async apply), under the watchdog. */
  private async pooled(instance: Instance, events: string, invocationId: string, timeoutMs: number, cpuTimeMs: number): Promise<RunOutcome> {
    const { isolate } = instance
    const cpuStart = isolate.cpuTime
    const t0 = performance.now()
    instance.busy = true
    const p = (async () => {
      const box = await instance.run.apply(undefined, [events, invocationId, Date.now() + timeoutMs], { timeout: timeoutMs, result: { copy: true } })
      const envelope = envelopeOf(box)
      return envelope === null ? this.later(instance) : envelope
    })()
    const r = await this.watched(instance, p, cpuStart, t0, timeoutMs, cpuTimeMs)
    if (!r.lost && r.cpuMs < SYNC_BUDGET_MS / 4) instance.inline = true
    return r
  }

  /** Awaits a run's result while the watchdog holds it to its wall deadline and CPU limit. */
  private async watched(instance: Instance, p: Promise<unknown>, cpuStart: bigint, t0: number, timeoutMs: number, cpuTimeMs: number): Promise<RunOutcome> {
    const { isolate } = instance
    const w: Watched = { instance, cpuStart, wallAt: t0 + timeoutMs, timeoutMs, cpuTimeMs, stopped: undefined, wake: undefined }
    this.watchdog.add(w)
    let value: unknown
    let thrown: unknown
    try {
      // The watchdog wakes this when it stops the run, whether or not disposal settles `p`.
      value = await Promise.race([p, new Promise<void>((resolve) => (w.wake = resolve))])
    } catch (e) {
      thrown = e
    } finally {
      this.watchdog.delete(w)
      instance.busy = false
    }
    const cpuMs = cpuSince(instance, cpuStart)
    if (w.stopped) {
      if (!isolate.isDisposed) isolate.dispose()
      return { error: w.stopped, lost: true, cpuMs }
    }
    if (thrown !== undefined) return this.failed(instance, thrown, timeoutMs, cpuMs)
    return this.settled(instance, value, cpuMs)
  }

  /** The envelope of the instance's pending run, once it settles. */
  private later(instance: Instance): Promise<unknown> {
    return instance.run.apply(undefined, [null], { result: { promise: true } }) as Promise<unknown>
  }

  /** A run that threw: the isolate is not trusted again. */
  private failed(instance: Instance, e: unknown, timeoutMs: number, cpuMs: number): RunOutcome {
    const error = classify(e, instance.spec, timeoutMs)
    if (!instance.isolate.isDisposed) instance.isolate.dispose()
    return { error, lost: true, cpuMs }
  }

  private settled(instance: Instance, envelope: unknown, cpuMs: number): RunOutcome {
    if (typeof envelope !== 'string') {
      return {
        error: info('SLUICE_ERR_FUNCTION_RESULT_INVALID', `function ${instance.spec.fn}: the sandbox returned no result envelope`, false),
        lost: false,
        cpuMs,
      }
    }
    return { envelope, lost: false, cpuMs }
  }

  dispose(instance: Instance): void {
    try {
      instance.run.release()
    } catch {
      // already gone with its isolate
    }
    if (!instance.isolate.isDisposed) instance.isolate.dispose()
  }
}

/**
 * One timer for every run this host has on the thread pool (instead of a timeout and an interval
 * per run): it disposes the isolate of a run past its wall deadline or CPU limit, and stops
 * ticking while no run is watched.
 */
class Watchdog {
  private readonly runs = new Set<Watched>()
  private timer: NodeJS.Timeout | undefined

  add(w: Watched): void {
    this.runs.add(w)
    this.timer ??= setInterval(() => this.tick(), WATCH_MS)
  }

  delete(w: Watched): void {
    this.runs.delete(w)
  }

  private tick(): void {
    if (this.runs.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
      return
    }
    const now = performance.now()
    for (const w of this.runs) {
      const { isolate, spec } = w.instance
      if (isolate.isDisposed) continue
      if (now >= w.wallAt) {
        this.stop(w, info('SLUICE_ERR_FUNCTION_TIMEOUT', `function ${spec.fn} passed its ${w.timeoutMs} ms deadline`, true))
      } else if (w.cpuTimeMs < w.timeoutMs) {
        const used = Number(isolate.cpuTime - w.cpuStart) / 1e6
        if (used > w.cpuTimeMs) this.stop(w, cpuLimit(spec, used, w.cpuTimeMs))
      }
    }
  }

  private stop(w: Watched, why: ErrorInfo): void {
    if (w.stopped) return
    w.stopped = why
    this.runs.delete(w)
    if (!w.instance.isolate.isDisposed) w.instance.isolate.dispose()
    w.wake?.()
  }
}

/** CPU time (ms) the instance's isolate used since `start`; 0 once it is disposed. */
const cpuSince = (instance: Instance, start: bigint) => (instance.isolate.isDisposed ? 0 : Number(instance.isolate.cpuTime - start) / 1e6)

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

const cpuLimit = (spec: InstanceSpec, usedMs: number, cpuTimeMs: number) =>
  info('SLUICE_ERR_FUNCTION_CPU_LIMIT', `function ${spec.fn} used ${Math.round(usedMs)} ms of CPU; the limit is ${cpuTimeMs} ms`, true)

function classify(e: unknown, spec: InstanceSpec, timeoutMs: number): ErrorInfo {
  const message = messageOf(e)
  if (/memory limit/i.test(message)) {
    return info('SLUICE_ERR_FUNCTION_MEMORY_LIMIT', `function ${spec.fn} ran out of its ${spec.memoryMb} MB heap`, true)
  }
  if (/timed out/i.test(message)) return info('SLUICE_ERR_FUNCTION_TIMEOUT', `function ${spec.fn} passed its ${timeoutMs} ms deadline`, true)
  return info('SLUICE_ERR_FUNCTION_CRASHED', `function ${spec.fn}: the isolate failed: ${message}`, true)
}
