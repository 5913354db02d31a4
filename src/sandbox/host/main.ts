/**
 * Worker-host process: runs isolates for instances of many functions, like a VM of a cloud
 * functions platform. Forked by SandboxPool with --no-node-snapshot (isolated-vm needs it), it
 * talks to the gateway over IPC only. If it dies, the gateway fails its in-flight batches back to
 * the router and starts a new host.
 */
import { Socket } from 'node:net'
import type { ErrorInfo } from '../../errors.js'
import { FrameChannel } from '../channel.js'
import { FRAME_FD, type FromHost, type HostHttpConfig, type HttpConnMessage, type HttpToHost, type ToHost } from '../protocol.js'
import { Isolates, type Instance } from './isolates.js'
import type { HostHttp } from './http-direct.js'

if (typeof process.send !== 'function') {
  process.stderr.write('sluice worker host: must be started by the gateway (no IPC channel)\n')
  process.exit(2)
}

const channel = new FrameChannel<FromHost, ToHost>(new Socket({ fd: FRAME_FD, readable: true, writable: true }), (m, payload) => {
  handle(m, payload).catch((e: unknown) => {
    process.stderr.write(`sluice worker host: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  })
})
const send = (m: FromHost, payload?: string) => channel.send(m, payload)

const isolates = new Isolates((message) => {
  // V8 reported a catastrophic error (e.g. an allocation it cannot satisfy): this process can no
  // longer be trusted. Exit; the gateway fails in-flight work back and starts a new host.
  process.stderr.write(`sluice worker host: catastrophic isolate error: ${message}\n`)
  process.exit(70)
})
/** Instances by id: the instance, or why it failed to start (answered to runs queued behind it). */
const instances = new Map<number, Promise<Instance | ErrorInfo>>()
/** Instances that are up, so that a run on one needs no wait for its start (one turn less per run). */
const up = new Map<number, Instance>()

/**
 * Direct HTTP (http-direct.ts). Its server code (fastify, ~2 us more host CPU per event in every
 * later batch, measured: a bigger heap to collect) loads with the first pin only, so a host that
 * serves no HTTP function never carries it.
 */
let http: Promise<HostHttp> | undefined
let httpConfig: HostHttpConfig | undefined
const directHttp = (): Promise<HostHttp> =>
  (http ??= import('./http-direct.js').then(async ({ HostHttp }) => {
    const h = new HostHttp({
      send,
      isolates,
      instance: (inst) => up.get(inst) ?? instances.get(inst)?.then((i) => ('isolate' in i ? i : undefined)),
      lost: (inst) => {
        instances.delete(inst)
        up.delete(inst)
        send({ t: 'lost', inst })
      },
    })
    if (httpConfig) await h.handle({ t: 'http-config', config: httpConfig }, undefined)
    return h
  }))

/** A direct HTTP message; before the first pin only the configuration is kept. */
async function handleHttp(m: HttpToHost, payload: string | undefined): Promise<void> {
  if (m.t === 'http-config') {
    httpConfig = m.config
    if (http) await (await http).handle(m, payload)
    return
  }
  if (!http && m.t !== 'http-pin') {
    // Nothing pinned here yet: nothing to report, close or forward.
    if (m.t === 'http-flush') send({ t: 'http-flushed', id: m.id })
    if (m.t === 'http-close') send({ t: 'http-closed', id: m.id })
    return
  }
  await (await directHttp()).handle(m, payload)
}

function startError(e: unknown, fn: string): ErrorInfo {
  const message = e instanceof Error ? e.message : String(e)
  if (/default export is not a function/.test(message)) return { code: 'SLUICE_ERR_FUNCTION_EXPORT', message: `function ${fn}: ${message}`, retriable: false }
  if (/memory limit/i.test(message))
    return { code: 'SLUICE_ERR_FUNCTION_MEMORY_LIMIT', message: `function ${fn}: module code ran out of memory`, retriable: true }
  if (/timed out/i.test(message)) return { code: 'SLUICE_ERR_FUNCTION_TIMEOUT', message: `function ${fn}: module code passed its deadline`, retriable: true }
  return { code: 'SLUICE_ERR_SANDBOX_INSTANCE_START', message: `function ${fn}: module code threw: ${message}`, retriable: true }
}

async function handle(m: ToHost, payload: string | undefined): Promise<void> {
  switch (m.t) {
    case 'code':
      isolates.addCode(m.hash, payload ?? '')
      return
    case 'forget-code':
      isolates.forgetCode(m.hash)
      return
    case 'prewarm':
      isolates.setPrewarm(m.memoryMb, m.count)
      return
    case 'create': {
      const t0 = performance.now()
      const p = isolates.create(m).then(
        ({ instance, prewarmed }) => {
          if (instances.get(m.inst) === p) up.set(m.inst, instance)
          send({ t: 'created', inst: m.inst, ms: performance.now() - t0, prewarmed })
          return instance
        },
        (e: unknown) => {
          const error = startError(e, m.fn)
          send({ t: 'created', inst: m.inst, ms: performance.now() - t0, prewarmed: false, error })
          return error
        },
      )
      instances.set(m.inst, p)
      return
    }
    case 'run': {
      const t0 = performance.now()
      const instance = up.get(m.inst) ??
        (await instances.get(m.inst)) ?? {
          code: 'SLUICE_ERR_SANDBOX_INSTANCE_START',
          message: `instance ${m.inst} is not running`,
          retriable: true,
        }
      if (!('isolate' in instance)) {
        instances.delete(m.inst)
        up.delete(m.inst)
        send({ t: 'result', id: m.id, inst: m.inst, error: instance, lost: true, cpuMs: 0, ms: 0 })
        return
      }
      const r = await isolates.run(instance, payload ?? '[]', m.invocationId, m.timeoutMs, m.cpuTimeMs)
      if (r.lost) {
        instances.delete(m.inst)
        up.delete(m.inst)
        void http?.then((h) => h.instanceGone(m.inst))
      }
      const header: FromHost = { t: 'result', id: m.id, inst: m.inst, lost: r.lost, cpuMs: r.cpuMs, ms: performance.now() - t0 }
      if (r.error) header.error = r.error
      send(header, r.envelope)
      return
    }
    case 'destroy': {
      void http?.then((h) => h.instanceGone(m.inst))
      const p = instances.get(m.inst)
      instances.delete(m.inst)
      up.delete(m.inst)
      const instance = await p
      if (instance && 'isolate' in instance) isolates.dispose(instance)
      return
    }
    case 'ping':
      send({ t: 'pong', id: m.id, instances: instances.size, rss: process.memoryUsage.rss(), bundles: isolates.codeCount })
      return
    default:
      return handleHttp(m, payload)
  }
}

// The gateway is gone (even kill -9): nothing left to work for.
process.on('disconnect', () => process.exit(0))
// Ctrl-C in a terminal (and `kill -<pgid>`, systemd's control-group stop) signals every process
// of the group at once. The gateway shuts its hosts down itself, after draining the batches they
// run, so a host that went with the signal would fail those batches. The pool stops a host by
// disconnecting it, or with SIGKILL.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined)
// A client connection the gateway hands over (direct HTTP), with the bytes it read to route it.
process.on('message', (m: HttpConnMessage, socket: Socket | undefined) => {
  // Unread bytes wait in the socket meanwhile; accept() puts `head` back before them.
  if (m?.t === 'http-conn' && socket) void directHttp().then((h) => h.accept(socket, Buffer.from(m.head, 'base64')))
})
process.send?.({ t: 'ready', pid: process.pid, execArgv: process.execArgv } satisfies FromHost)
