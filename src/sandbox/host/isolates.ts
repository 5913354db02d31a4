import ivm from 'isolated-vm'
import type { ErrorCode, ErrorInfo } from '../../errors.js'
import type { InstanceSpec } from '../protocol.js'
import { BOOTSTRAP } from './bootstrap.js'

type RunFn = (eventsJson: string, invocationId: string, deadline: number) => Promise<string>

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
}

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

  constructor(private readonly onFatal: (message: string) => void) {}

  addCode(hash: string, source: string): void {
    if (!this.code.has(hash)) this.code.set(hash, { source })
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
      return { instance: { spec, isolate: b.isolate, context: b.context, run, busy: false }, prewarmed: pooled !== undefined }
    } catch (e) {
      if (!b.isolate.isDisposed) b.isolate.dispose()
      throw e
    }
  }

  /**
   * Runs one batch. Enforces the wall deadline (also across awaits: the isolate is disposed when
   * it passes) and the CPU limit. `lost` tells the caller the instance is gone.
   */
  async run(
    instance: Instance,
    events: string,
    invocationId: string,
    timeoutMs: number,
    cpuTimeMs: number,
  ): Promise<{ envelope?: string; error?: ErrorInfo; lost: boolean; cpuMs: number }> {
    const { isolate } = instance
    const cpuStart = isolate.cpuTime
    let stopped: ErrorInfo | undefined
    const stop = (why: ErrorInfo) => {
      if (stopped) return
      stopped = why
      if (!isolate.isDisposed) isolate.dispose()
    }
    const wall = setTimeout(
      () => stop(info('SLUICE_ERR_FUNCTION_TIMEOUT', `function ${instance.spec.fn} passed its ${timeoutMs} ms deadline`, true)),
      timeoutMs,
    )
    const cpuWatch =
      cpuTimeMs < timeoutMs
        ? setInterval(
            () => {
              if (isolate.isDisposed) return
              const used = Number(isolate.cpuTime - cpuStart) / 1e6
              if (used > cpuTimeMs)
                stop(
                  info('SLUICE_ERR_FUNCTION_CPU_LIMIT', `function ${instance.spec.fn} used ${Math.round(used)} ms of CPU; the limit is ${cpuTimeMs} ms`, true),
                )
            },
            Math.max(5, Math.min(50, cpuTimeMs / 4)),
          )
        : undefined
    instance.busy = true
    let envelope: unknown
    let thrown: unknown
    try {
      envelope = await instance.run.apply(undefined, [events, invocationId, Date.now() + timeoutMs], { timeout: timeoutMs, result: { promise: true } })
    } catch (e) {
      thrown = e
    } finally {
      clearTimeout(wall)
      if (cpuWatch) clearInterval(cpuWatch)
      instance.busy = false
    }
    const cpuMs = isolate.isDisposed ? 0 : Number(isolate.cpuTime - cpuStart) / 1e6
    if (thrown !== undefined || stopped) {
      const error = stopped ?? classify(thrown, instance.spec, timeoutMs)
      if (!isolate.isDisposed) isolate.dispose()
      return { error, lost: true, cpuMs }
    }
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

function classify(e: unknown, spec: InstanceSpec, timeoutMs: number): ErrorInfo {
  const message = e instanceof Error ? e.message : String(e)
  if (/memory limit/i.test(message)) {
    return info('SLUICE_ERR_FUNCTION_MEMORY_LIMIT', `function ${spec.fn} ran out of its ${spec.memoryMb} MB heap`, true)
  }
  if (/timed out/i.test(message)) return info('SLUICE_ERR_FUNCTION_TIMEOUT', `function ${spec.fn} passed its ${timeoutMs} ms deadline`, true)
  return info('SLUICE_ERR_FUNCTION_CRASHED', `function ${spec.fn}: the isolate failed: ${message}`, true)
}
