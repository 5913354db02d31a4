/**
 * The live feed behind the dashboard: a snapshot of the gateway every second, a ring buffer of
 * the last minutes so charts have data the moment a page opens, and invocation and dead-letter
 * notifications, streamed as server-sent events on `GET /admin/events`. Wire format:
 * live-types.ts.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { CHANNELS, type DeadMessage, type InvocationMessage } from '../channels.js'
import { toInfo } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import type { FunctionInfo, HealthReport } from './admin.js'
import type { SourceLag } from './metrics.js'
import { ACTIVITY_CAP, type LiveActivity, type LiveFunction, type LiveHistory, type LiveSample, type LiveSnapshot } from './live-types.js'

/** What the feed reads from the gateway on every tick. */
export interface LiveSource {
  functions(): FunctionInfo[]
  health(): HealthReport
  /** Source lag of the triggers that report it; summed per function. */
  lag(): SourceLag[]
}

export interface LiveFeedOptions {
  /** Gateway id: notifications of other gateways in the process are ignored. */
  gateway: number
  source: LiveSource
  log: Logger
  /** Default 1000. */
  stepMs?: number
  /** How much history is kept. Default 10 minutes. */
  historyMs?: number
}

/** Totals of one function at one tick, from which rates are computed. */
interface Row {
  sample: LiveSample
  events: number
  invocations: number
  failures: number
}

interface Tick {
  t: number
  rows: Map<string, Row>
}

/** Seconds over which the snapshot's eventsPerSec and errorRate are computed. */
const RATE_WINDOW = 5
const ERROR_WINDOW = 60

/** A fixed-capacity ring buffer, oldest first. */
class Ring<T> {
  private readonly items: Array<T | undefined>
  private next = 0
  size = 0

  constructor(readonly capacity: number) {
    this.items = new Array<T | undefined>(capacity)
  }

  push(v: T): void {
    this.items[this.next] = v
    this.next = (this.next + 1) % this.capacity
    this.size = Math.min(this.size + 1, this.capacity)
  }

  /** The item `back` steps before the newest (0: newest), clamped to the oldest kept. */
  back(back: number): T | undefined {
    if (this.size === 0) return undefined
    const b = Math.min(back, this.size - 1)
    return this.items[(this.next - 1 - b + this.capacity * 2) % this.capacity]
  }

  toArray(): T[] {
    const out: T[] = []
    for (let i = this.size - 1; i >= 0; i--) out.push(this.back(i) as T)
    return out
  }
}

interface Client {
  res: ServerResponse
  /** The socket's buffer is full: skip snapshots until it drains. */
  congested: boolean
}

/**
 * Samples the gateway every `stepMs` while it runs, whether or not anyone watches, and streams
 * to the connected clients. `close()` ends every stream and stops sampling; idempotent.
 */
export class LiveFeed {
  private readonly stepMs: number
  private readonly ring: Ring<Tick>
  private readonly clients = new Set<Client>()
  private readonly unsubscribers: Array<() => void> = []
  private timer: NodeJS.Timeout | undefined
  private last: LiveSnapshot | undefined
  private pending: LiveActivity = { invocations: [], dead: [], dropped: 0 }
  private closed = false

  constructor(private readonly opts: LiveFeedOptions) {
    this.stepMs = opts.stepMs ?? 1000
    this.ring = new Ring(Math.max(2, Math.ceil((opts.historyMs ?? 600_000) / this.stepMs)))
    const on = <T extends { gateway: number }>(name: string, fn: (m: T) => void) => {
      const handler = (m: unknown) => {
        // diagnostics_channel rethrows a subscriber's error on the next tick (an uncaught
        // exception): what this feeds is best-effort, the event path must never see it fail.
        try {
          if ((m as T).gateway === opts.gateway && this.clients.size > 0) fn(m as T)
        } catch {
          // dropped
        }
      }
      subscribe(name, handler)
      this.unsubscribers.push(() => unsubscribe(name, handler))
    }
    on<InvocationMessage>(CHANNELS.invocation, (m) => {
      if (this.pending.invocations.length >= ACTIVITY_CAP) return void this.pending.dropped++
      const { function: fn, invocationId, kind, size, ok, failed, durationMs, coldStart, error } = m
      this.pending.invocations.push({
        function: fn,
        invocationId,
        kind,
        size,
        ok,
        failed,
        durationMs: round(durationMs),
        coldStart,
        ...(error ? { error: { code: error.code, message: error.message } } : {}),
      })
    })
    on<DeadMessage>(CHANNELS.dead, (m) => {
      if (this.pending.dead.length >= ACTIVITY_CAP) return void this.pending.dropped++
      const { function: fn, eventId, deadLetterId, attempts, error } = m
      this.pending.dead.push({ function: fn, eventId, deadLetterId, attempts, error: { code: error.code, message: error.message } })
    })
  }

  /** Takes the first sample and starts the clock. Call once the gateway's functions are registered. */
  start(): void {
    if (this.timer || this.closed) return
    this.tick()
    this.timer = setInterval(() => this.tick(), this.stepMs)
    this.timer.unref()
  }

  /** Connected clients (for tests and health). */
  get clientCount(): number {
    return this.clients.size
  }

  /** The buffered history, oldest first. */
  history(): LiveHistory {
    const names = this.last?.functions.map((f) => f.name) ?? []
    const zero: LiveSample = [0, 0, 0, 0]
    return {
      stepMs: this.stepMs,
      names,
      points: this.ring.toArray().map((k) => ({ t: k.t, f: names.map((n) => k.rows.get(n)?.sample ?? zero) })),
    }
  }

  /** The latest snapshot (taken at start() and then every step). */
  snapshot(): LiveSnapshot | undefined {
    return this.last
  }

  private tick(): void {
    try {
      this.last = this.sample()
    } catch (e) {
      this.opts.log.warn({ err: toInfo(e, 'SLUICE_ERR_INTERNAL') }, 'live feed: sampling failed')
      return
    }
    this.broadcast('snapshot', this.last)
    const p = this.pending
    if (p.invocations.length > 0 || p.dead.length > 0 || p.dropped > 0) {
      this.pending = { invocations: [], dead: [], dropped: 0 }
      this.broadcast('activity', p, true)
    }
  }

  private sample(): LiveSnapshot {
    const t = Date.now()
    const infos = this.opts.source.functions()
    const health = this.opts.source.health()
    const lag = new Map<string, number>()
    for (const l of this.opts.source.lag()) lag.set(l.function, (lag.get(l.function) ?? 0) + l.lag)
    const rateFrom = this.ring.back(RATE_WINDOW - 1)
    const errorFrom = this.ring.back(ERROR_WINDOW - 1)
    const rows = new Map<string, Row>()
    const functions = infos.map((f): LiveFunction => {
      const events = f.counts.events
      const row: Row = {
        sample: [f.instances.total, f.instances.busy, f.backlog, ratePerSec(events, t, rateFrom, f.name)],
        events,
        invocations: f.counts.invocations,
        failures: f.counts.failures,
      }
      rows.set(f.name, row)
      const before = errorFrom?.rows.get(f.name)
      const calls = f.counts.invocations - (before?.invocations ?? 0)
      const fails = f.counts.failures - (before?.failures ?? 0)
      const lf: LiveFunction = {
        name: f.name,
        trigger: f.trigger.kind,
        ...(f.trigger.connection ? { connection: f.trigger.connection } : {}),
        instances: f.instances.total,
        busy: f.instances.busy,
        backlog: f.backlog,
        inflight: f.inflight,
        invocations: f.counts.invocations,
        failures: f.counts.failures,
        eventsDone: f.counts.eventsDone,
        eventsDead: f.counts.eventsDead,
        retries: f.counts.retries,
        eventsPerSec: ratePerSec(events, t, rateFrom, f.name),
        errorRate: calls > 0 ? round(fails / calls) : 0,
      }
      if (f.latencyMs) {
        lf.p50 = f.latencyMs.p50
        lf.p99 = f.latencyMs.p99
      }
      const l = lag.get(f.name)
      if (l !== undefined) lf.lag = l
      return lf
    })
    this.ring.push({ t, rows })
    return {
      t,
      status: health.status,
      functions,
      connections: health.connections,
      hosts: health.hosts,
    }
  }

  /** Starts streaming to a response whose head the caller has not written yet. */
  attach(res: ServerResponse, requestId: string): void {
    if (this.closed) {
      res.writeHead(503).end()
      return
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      'x-request-id': requestId,
    })
    const client: Client = { res, congested: false }
    this.clients.add(client)
    res.on('close', () => this.clients.delete(client))
    res.on('drain', () => {
      client.congested = false
    })
    res.write(`retry: 2000\n\n`)
    this.send(client, 'history', this.history(), true)
    if (this.last) this.send(client, 'snapshot', this.last, true)
  }

  private broadcast(event: string, data: unknown, always = false): void {
    if (this.clients.size === 0) return
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    for (const c of this.clients) this.write(c, frame, always)
  }

  private send(c: Client, event: string, data: unknown, always = false): void {
    this.write(c, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`, always)
  }

  private write(c: Client, frame: string, always: boolean): void {
    // A slow client misses snapshots (the next one supersedes them) but not notifications.
    if (c.congested && !always) return
    if (!c.res.write(frame)) c.congested = true
  }

  /** Ends every open stream (the server is closing). */
  endStreams(): void {
    for (const c of this.clients) c.res.end()
    this.clients.clear()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    for (const u of this.unsubscribers.splice(0)) u()
    this.endStreams()
  }
}

/** Events per second between tick `from` and now; 0 without an earlier tick. */
function ratePerSec(now: number, t: number, from: Tick | undefined, name: string): number {
  if (!from) return 0
  const dt = (t - from.t) / 1000
  // A function missing from the earlier tick counts from zero.
  const before = from.rows.get(name)?.events ?? 0
  return dt > 0 ? round(Math.max(0, now - before) / dt) : 0
}

const round = (n: number) => Math.round(n * 100) / 100

/**
 * Registers `GET /admin/events` behind `guard` (which, for this route only, may accept the admin
 * key as a `key` query parameter: EventSource cannot send headers), and ends the streams when the
 * server closes so it does not wait for them.
 */
export function registerLiveRoutes(app: FastifyInstance, feed: LiveFeed, guard: (req: FastifyRequest) => Promise<void>): void {
  app.register(async (scope) => {
    scope.addHook('onRequest', guard)
    scope.get(
      '/admin/events',
      { schema: { querystring: { type: 'object', properties: { key: { type: 'string' } }, additionalProperties: false } } },
      async (req, reply) => {
        reply.hijack()
        feed.attach(reply.raw, req.id)
      },
    )
  })
  app.addHook('preClose', async () => feed.endStreams())
}
