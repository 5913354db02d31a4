import { fork, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { SluiceError, type ErrorInfo } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import { FrameChannel } from './channel.js'
import { parseEnvelope } from './envelope.js'
import { detachSourceMap, StackMapper } from './source-map.js'
import type { FromHost, HttpConnMessage, InstanceSpec, RunPayload, ToHost } from './protocol.js'

export interface PoolOptions {
  hosts: number
  /** Blank isolates per host per heap size in `prewarmSizes`. */
  prewarm: number
  prewarmSizes: number[]
  log: Logger
  restartInitialMs?: number
  restartMaxMs?: number
  heartbeatMs?: number
}

export interface InstanceHandle {
  inst: number
  hostId: number
  fn: string
  memoryMb: number
  /** Resolves when the instance is up; rejects with its start error. */
  ready: Promise<{ ms: number; prewarmed: boolean }>
}

export interface RunResult {
  payload: RunPayload
  /** The instance is gone (timeout, memory limit, crash): do not use it again. */
  lost: boolean
  cpuMs: number
  /** Time the host spent, from receiving the batch to sending the result. */
  hostMs: number
  /**
   * The function never began on this run: its instance was gone, or its host died before the
   * instance was ready. Running it again elsewhere cannot do anything twice.
   */
  notStarted?: boolean
}

interface PendingRun {
  resolve(r: RunResult): void
  timer: NodeJS.Timeout
  inst: number
  /** Bundle hash of the instance's code (for mapping error stacks). */
  hash: string | undefined
}

class HostSlot {
  child: ChildProcess | undefined
  channel: FrameChannel<ToHost, FromHost> | undefined
  up = false
  pid = 0
  execArgv: string[] = []
  restarts = 0
  failures = 0
  startedAt = 0
  rss = 0
  /** Function bundles the host holds (its last pong). */
  bundles = 0
  readonly codeSent = new Set<string>()
  readonly instances = new Map<number, { resolve(v: { ms: number; prewarmed: boolean }): void; reject(e: Error): void; settled: boolean; hash: string }>()
  readonly runs = new Map<number, PendingRun & { fn: string }>()
  /** Client connections sent to the host lately (see sendConnection). */
  readonly handed = new Set<SentHandle>()
  lastPong = 0
  constructor(readonly id: number) {}
}

export interface HostInfo {
  id: number
  up: boolean
  pid: number
  instances: number
  restarts: number
  rss: number
  /** Function bundles (code versions) the host holds, as of its last heartbeat. */
  bundles: number
  execArgv: string[]
}

const RUN_GRACE_MS = 2000
/** A host acknowledges a connection sent to it well within this. */
const HANDOFF_ACK_MS = 10_000

/** The native handle of a socket sent to a host: `fd` turns negative once Node closed it here. */
interface SentHandle {
  fd: number
  close(): void
}

/**
 * Environment variables a worker host inherits. It needs none of the gateway's configuration or
 * secrets (admin key, broker and store credentials): only what Node and V8 use to behave as the
 * gateway does. Time zone and locale, because Date and Intl inside isolates follow the process;
 * the temp folder (the TypeScript loader caches there when running from sources); NODE_ICU_DATA
 * (full ICU data for Intl) and NODE_V8_COVERAGE (coverage collected across processes); and what
 * Windows needs to start a process at all.
 */
const HOST_ENV = /^(PATH|HOME|TZ|LANG|LANGUAGE|LC_[A-Z_]+|TMPDIR|TMP|TEMP|NODE_ICU_DATA|NODE_V8_COVERAGE|SYSTEMROOT|WINDIR|COMSPEC)$/i

/** The environment a worker host is forked with (see HOST_ENV); NODE_OPTIONS is always empty. */
function hostEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && HOST_ENV.test(k)) out[k] = v
  out.NODE_OPTIONS = ''
  return out
}

/** The V8 stack limit a worker host asks for, in KiB, when the process stack allows it. */
const HOST_STACK_KIB = 3800

/**
 * `--stack-size` for a worker host. A run first executes on the host's main thread (applySync,
 * isolates.ts), whose V8 limit is Node's conservative 984 KiB: about 10k frames, where isolated-vm's
 * pool threads give about 100k, so a function's recursion (or JSON.stringify of its deep result)
 * would overflow or not depending on where it ran. The OS gives the main thread RLIMIT_STACK
 * (8 MiB by default); ask V8 for at most half of it, so functions get ~40k frames either way.
 */
export function hostStackFlag(limits = '/proc/self/limits'): string[] {
  let soft: number | undefined
  try {
    const m = /^Max stack size\s+(\S+)/m.exec(readFileSync(limits, 'utf8'))
    soft = m?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m?.[1])
  } catch {
    return [] // not Linux: keep Node's default
  }
  if (soft === undefined || Number.isNaN(soft)) return []
  const kib = Math.min(HOST_STACK_KIB, Math.floor(soft / 1024 / 2))
  return kib > 984 ? [`--stack-size=${kib}`] : []
}

function hostEntry(): { file: string; execArgv: string[] } {
  const js = fileURLToPath(new URL('./host/main.js', import.meta.url))
  if (existsSync(js)) return { file: js, execArgv: ['--no-node-snapshot', ...hostStackFlag()] }
  // Running from TypeScript sources (tests, tsx): the host needs the same loader, resolved from
  // here since the gateway may run in a folder without node_modules (a test's temp dir).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  return { file: fileURLToPath(new URL('./host/main.ts', import.meta.url)), execArgv: ['--no-node-snapshot', ...hostStackFlag(), '--import', tsx] }
}

/**
 * Supervises the worker-host processes. A host that exits (crash, OOM abort, kill -9) fails its
 * in-flight runs with SLUICE_ERR_FUNCTION_CRASHED (the router retries them), reports its lost
 * instances, and is started again with exponential backoff. A host that stops answering
 * heartbeats, or holds a run past its deadline plus a grace period, is killed.
 *
 * Events: 'host-up' (id), 'host-down' (id, lostInstanceIds: number[]), 'instance-lost' (inst).
 */
export class SandboxPool extends EventEmitter {
  private readonly slots: HostSlot[]
  private readonly code = new Map<string, string>()
  private readonly stacks = new StackMapper()
  private nextInst = 1
  private nextRun = 1
  private closing = false
  private heartbeat: NodeJS.Timeout | undefined
  private readonly entry = hostEntry()

  constructor(private readonly opts: PoolOptions) {
    super()
    this.slots = Array.from({ length: opts.hosts }, (_, i) => new HostSlot(i))
  }

  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.spawn(s)))
    const every = this.opts.heartbeatMs ?? 2000
    this.heartbeat = setInterval(() => this.checkHeartbeats(every), every)
    this.heartbeat.unref()
  }

  hostIds(): number[] {
    return this.slots.filter((s) => s.up).map((s) => s.id)
  }

  info(): HostInfo[] {
    return this.slots.map((s) => ({
      id: s.id,
      up: s.up,
      pid: s.pid,
      instances: s.instances.size,
      restarts: s.restarts,
      rss: s.rss,
      bundles: s.bundles,
      execArgv: s.execArgv,
    }))
  }

  /** Kills a host (tests and the admin API's fault drills). */
  kill(hostId: number, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.slots[hostId]?.child?.kill(signal)
  }

  /**
   * Registers a compiled bundle (CompiledFunction's hash and code). An inline source map at the
   * end of the code (compileFunction appends one) is kept here, to map the stacks of failed
   * invocations to the author's files, and not sent to worker hosts.
   */
  registerCode(hash: string, code: string): void {
    const split = detachSourceMap(code)
    this.code.set(hash, split.code)
    if (split.map !== undefined) this.stacks.add(hash, split.map)
  }

  /**
   * Forgets a bundle no instance runs any more (a reload replaced it): the gateway's copy and its
   * source map, and each worker host's copy and code cache. Registering the same hash
   * again (a reload back to that code) makes it available again.
   */
  forgetCode(hash: string): void {
    this.code.delete(hash)
    this.stacks.delete(hash)
    for (const slot of this.slots) {
      if (!slot?.up || !slot.codeSent.delete(hash)) continue
      this.send(slot, { t: 'forget-code', hash })
    }
  }

  /** Whether a bundle is registered (see registerCode, forgetCode). */
  hasCode(hash: string): boolean {
    return this.code.has(hash)
  }

  private spawn(slot: HostSlot): Promise<void> {
    return new Promise((resolve) => {
      const child = fork(this.entry.file, [], {
        // SLUICE_HOST_CPU_PROF=<dir>: worker hosts write V8 CPU profiles there (see bench/README.md).
        execArgv: [...this.entry.execArgv, ...(process.env.SLUICE_HOST_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SLUICE_HOST_CPU_PROF}`] : [])],
        serialization: 'advanced',
        // fd 3: Node IPC (ready, and disconnect when the gateway dies); fd 4: the frame channel.
        stdio: ['ignore', 'inherit', 'pipe', 'ipc', 'pipe'],
        env: hostEnv(),
      })
      slot.child = child
      slot.channel = new FrameChannel<ToHost, FromHost>(child.stdio[4] as Socket, (m, payload) => this.onMessage(slot, m, payload))
      slot.codeSent.clear()
      let stderr = ''
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000)
      })
      child.on('message', (m: FromHost) => {
        if (m.t === 'ready') {
          slot.up = true
          slot.pid = m.pid
          slot.execArgv = m.execArgv
          slot.startedAt = Date.now()
          slot.lastPong = Date.now()
          if (this.opts.prewarm > 0 && this.opts.prewarmSizes.length > 0) {
            this.send(slot, { t: 'prewarm', memoryMb: this.opts.prewarmSizes, count: this.opts.prewarm })
          }
          this.opts.log.info({ host: slot.id, hostPid: m.pid }, 'worker host up')
          this.emit('host-up', slot.id)
          resolve()
        }
      })
      child.on('exit', (code, signal) => {
        if (slot.child !== child) return
        this.onExit(slot, code, signal, stderr)
        resolve()
      })
      child.on('error', (e) => this.opts.log.error({ host: slot.id, err: e.message }, 'worker host process error'))
    })
  }

  private onMessage(slot: HostSlot, m: FromHost, payload: string | undefined): void {
    switch (m.t) {
      case 'created': {
        const p = slot.instances.get(m.inst)
        if (!p || p.settled) return
        p.settled = true
        if (m.error) {
          slot.instances.delete(m.inst)
          p.reject(new SluiceError(m.error.code, m.error.message, { retriable: m.error.retriable }))
        } else p.resolve({ ms: m.ms, prewarmed: m.prewarmed })
        return
      }
      case 'result': {
        const r = slot.runs.get(m.id)
        if (!r) return
        slot.runs.delete(m.id)
        clearTimeout(r.timer)
        if (m.lost) {
          slot.instances.delete(m.inst)
          this.emit('instance-lost', m.inst)
        }
        const result: RunPayload = m.error ? { ok: false, error: m.error, outputs: [], logs: [] } : parseEnvelope(payload, r.fn)
        if (result.error?.context?.stack !== undefined) result.error = this.stacks.mapError(result.error, r.hash)
        r.resolve({ payload: result, lost: m.lost, cpuMs: m.cpuMs, hostMs: m.ms })
        return
      }
      case 'pong':
        slot.lastPong = Date.now()
        slot.rss = m.rss
        slot.bundles = m.bundles
        return
      case 'lost':
        if (slot.instances.delete(m.inst)) this.emit('instance-lost', m.inst)
        return
      default:
        // Direct HTTP (src/gateway/direct-http.ts).
        this.emit('http', slot.id, m, payload)
        return
    }
  }

  private onExit(slot: HostSlot, code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    slot.up = false
    slot.child = undefined
    slot.channel?.close()
    slot.channel = undefined
    const lost = [...slot.instances.keys()]
    // Instances still starting never ran user code: their queued runs may go elsewhere.
    const starting = new Set<number>()
    for (const [inst, p] of slot.instances) if (!p.settled) starting.add(inst)
    const crash: ErrorInfo = {
      code: 'SLUICE_ERR_FUNCTION_CRASHED',
      message: `worker host ${slot.id} exited (${signal ?? `code ${code}`}) while the function ran`,
      retriable: true,
    }
    for (const [, p] of slot.instances) {
      if (!p.settled) {
        p.settled = true
        p.reject(new SluiceError('SLUICE_ERR_SANDBOX_INSTANCE_START', `worker host ${slot.id} exited while the instance started`))
      }
    }
    slot.instances.clear()
    for (const h of slot.handed) if (h.fd >= 0) h.close()
    slot.handed.clear()
    for (const [id, r] of slot.runs) {
      clearTimeout(r.timer)
      slot.runs.delete(id)
      r.resolve({ payload: { ok: false, error: crash, outputs: [], logs: [] }, lost: true, cpuMs: 0, hostMs: 0, notStarted: starting.has(r.inst) })
    }
    this.emit('host-down', slot.id, lost)
    if (this.closing) {
      // Shutting down: the pool stopped it (or it went with the gateway's signal); nothing to restart.
      this.opts.log.info({ host: slot.id, hostPid: slot.pid, code, signal }, 'worker host exited')
      return
    }
    const stable = Date.now() - slot.startedAt > 30_000
    slot.failures = stable ? 1 : slot.failures + 1
    slot.restarts++
    const initial = this.opts.restartInitialMs ?? 100
    const delay = Math.min(this.opts.restartMaxMs ?? 10_000, initial * 2 ** (slot.failures - 1))
    this.opts.log.error(
      { host: slot.id, hostPid: slot.pid, code, signal, lostInstances: lost.length, restartInMs: delay, stderr: stderr.trim().slice(-1000) || undefined },
      'worker host exited; restarting',
    )
    setTimeout(() => {
      if (!this.closing) void this.spawn(slot)
    }, delay).unref()
  }

  private checkHeartbeats(every: number): void {
    for (const slot of this.slots) {
      if (!slot.up || !slot.child) continue
      if (Date.now() - slot.lastPong > every * 5) {
        this.opts.log.error({ host: slot.id, hostPid: slot.pid }, 'worker host stopped answering heartbeats; killing it')
        slot.child.kill('SIGKILL')
        continue
      }
      this.send(slot, { t: 'ping', id: 0 })
    }
  }

  private send(slot: HostSlot, m: ToHost, payload?: string): boolean {
    return slot.channel?.send(m, payload) ?? false
  }

  /** Sends a message to a host that is up; false when it is not. */
  sendTo(hostId: number, m: ToHost, payload?: string): boolean {
    const slot = this.slots[hostId]
    return slot?.up === true && this.send(slot, m, payload)
  }

  /**
   * Hands a client connection to a host (over Node's IPC channel, which can carry a socket). The
   * socket is closed here once sent; `done` learns whether the host got it.
   */
  sendConnection(hostId: number, m: HttpConnMessage, socket: Socket, done: (ok: boolean) => void): void {
    const slot = this.slots[hostId]
    const child = slot?.child
    if (!slot || !child?.connected || this.closing) return done(false)
    // Node closes its copy of the connection once the host acknowledges it. A host that dies first
    // never does, and the client would wait on a connection nobody serves: close it then (onExit).
    const handle = (socket as unknown as { _handle?: SentHandle })._handle
    if (handle) {
      slot.handed.add(handle)
      setTimeout(() => slot.handed.delete(handle), HANDOFF_ACK_MS).unref()
    }
    child.send(m, socket, { keepOpen: false }, (e) => done(e === null))
  }

  /** Maps an error's stack from a bundle of `hash` to the author's files. */
  mapError(error: ErrorInfo, hash: string): ErrorInfo {
    return error.context?.stack === undefined ? error : this.stacks.mapError(error, hash)
  }

  /** Starts an instance on a host. Never throws: failures reject `ready`. */
  create(hostId: number, spec: Omit<InstanceSpec, 'inst'>): InstanceHandle {
    const inst = this.nextInst++
    const slot = this.slots[hostId]
    let handlers!: { resolve(v: { ms: number; prewarmed: boolean }): void; reject(e: Error): void }
    const ready = new Promise<{ ms: number; prewarmed: boolean }>((resolve, reject) => {
      handlers = { resolve, reject }
    })
    ready.catch(() => undefined)
    if (!slot?.up || this.closing) {
      handlers.reject(new SluiceError('SLUICE_ERR_SANDBOX_UNAVAILABLE', `worker host ${hostId} is not running`))
      return { inst, hostId, fn: spec.fn, memoryMb: spec.memoryMb, ready }
    }
    if (!slot.codeSent.has(spec.hash)) {
      const code = this.code.get(spec.hash)
      if (code === undefined) throw new Error(`code ${spec.hash} of ${spec.fn} was never registered`)
      this.send(slot, { t: 'code', hash: spec.hash }, code)
      slot.codeSent.add(spec.hash)
    }
    slot.instances.set(inst, { ...handlers, settled: false, hash: spec.hash })
    this.send(slot, { t: 'create', inst, ...spec })
    return { inst, hostId, fn: spec.fn, memoryMb: spec.memoryMb, ready }
  }

  /**
   * Runs a batch (already JSON) on an instance. May be called before `ready` settles: the host
   * queues it behind the creation, which saves a round trip on a cold start. Never rejects.
   */
  run(h: InstanceHandle, events: string, invocationId: string, timeoutMs: number, cpuTimeMs: number): Promise<RunResult> {
    const slot = this.slots[h.hostId]
    return new Promise((resolve) => {
      if (!slot?.up || !slot.instances.has(h.inst)) {
        resolve({
          payload: {
            ok: false,
            error: { code: 'SLUICE_ERR_FUNCTION_CRASHED', message: `instance ${h.inst} of ${h.fn} is gone`, retriable: true },
            outputs: [],
            logs: [],
          },
          lost: true,
          cpuMs: 0,
          hostMs: 0,
          notStarted: true,
        })
        return
      }
      const id = this.nextRun++
      // The host enforces the deadline itself; this guard catches a host that cannot.
      const timer = setTimeout(() => {
        this.opts.log.error({ host: h.hostId, hostPid: slot.pid, function: h.fn }, 'worker host held a run past its deadline; killing it')
        slot.child?.kill('SIGKILL')
      }, timeoutMs + RUN_GRACE_MS)
      slot.runs.set(id, { resolve, timer, inst: h.inst, fn: h.fn, hash: slot.instances.get(h.inst)?.hash })
      this.send(slot, { t: 'run', id, inst: h.inst, invocationId, timeoutMs, cpuTimeMs }, events)
    })
  }

  destroy(h: InstanceHandle): void {
    const slot = this.slots[h.hostId]
    if (!slot?.instances.delete(h.inst)) return
    this.send(slot, { t: 'destroy', inst: h.inst })
  }

  /** Stops every host. Idempotent. */
  close(): Promise<void> {
    this.closePromise ??= this.doClose()
    return this.closePromise
  }

  private closePromise: Promise<void> | undefined

  private async doClose(): Promise<void> {
    this.closing = true
    if (this.heartbeat) clearInterval(this.heartbeat)
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            const child = slot.child
            if (!child || child.exitCode !== null) return resolve()
            const t = setTimeout(() => child.kill('SIGKILL'), 2000)
            child.once('exit', () => {
              clearTimeout(t)
              resolve()
            })
            child.disconnect()
          }),
      ),
    )
  }
}
