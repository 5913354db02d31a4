import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import {
  CHANNELS,
  type DeadMessage,
  type HostMessage,
  type InstanceMessage,
  type InvocationMessage,
  type RetryMessage,
  type TimerSkipMessage,
} from '../channels.js'
import { reportsLag, type Connector } from '../sdk/index.js'

export interface SourceLag {
  function: string
  kind: string
  connection?: string
  /** The partition (e.g. `telemetry/3`), or '' for a total. */
  source: string
  lag: number
}

/** Lag of every trigger whose connector reports it (LagReporter); one that throws is left out. */
export function sourceLag(bindings: ReadonlyArray<{ fn: string; kind: string; connection?: string; connector: Connector }>): SourceLag[] {
  const out: SourceLag[] = []
  for (const b of bindings) {
    if (!reportsLag(b.connector)) continue
    let lag: Record<string, number> | number
    try {
      lag = b.connector.lag()
    } catch {
      continue
    }
    const base = { function: b.fn, kind: b.kind, ...(b.connection ? { connection: b.connection } : {}) }
    if (typeof lag === 'number') out.push({ ...base, source: '', lag })
    else for (const [source, n] of Object.entries(lag)) if (typeof n === 'number') out.push({ ...base, source, lag: n })
  }
  return out
}

export interface GaugeSnapshot {
  functions: Array<{ name: string; instances: number; busy: number; backlog: number; waiting: number }>
  connections: Array<{ function: string; kind: string; connection?: string; up: boolean }>
  hostsUp: number
  lag: SourceLag[]
}

/**
 * Prometheus metrics of one gateway. Counters and histograms follow the diagnostics channels;
 * gauges are read from the gateway on every scrape.
 *
 * For an external autoscaler (KEDA's prometheus scaler), scale gateway instances on
 * `sum(sluice_backlog_events)`: events accepted and not yet finished, across functions.
 */
export class Metrics {
  readonly registry = new Registry()
  private readonly unsubscribers: Array<() => void> = []

  constructor(gateway: number, snapshot: () => GaugeSnapshot) {
    const r = this.registry
    collectDefaultMetrics({ register: r, prefix: 'sluice_process_' })
    const invocations = new Counter({
      name: 'sluice_invocations_total',
      help: 'Function invocations by outcome.',
      labelNames: ['function', 'kind', 'outcome'],
      registers: [r],
    })
    const duration = new Histogram({
      name: 'sluice_invocation_duration_seconds',
      help: 'Invocation duration, from dispatch to result.',
      labelNames: ['function'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [r],
    })
    const batchSize = new Histogram({
      name: 'sluice_batch_size',
      help: 'Events per invocation.',
      labelNames: ['function'],
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000],
      registers: [r],
    })
    const wait = new Histogram({
      name: 'sluice_wait_seconds',
      help: 'Time a ready batch waited for an instance.',
      labelNames: ['function'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [r],
    })
    const failedEvents = new Counter({ name: 'sluice_event_failures_total', help: 'Events that failed an attempt.', labelNames: ['function'], registers: [r] })
    const retries = new Counter({ name: 'sluice_retries_total', help: 'Events scheduled for another attempt.', labelNames: ['function'], registers: [r] })
    const dead = new Counter({ name: 'sluice_dead_letters_total', help: 'Events written to the dead-letter store.', labelNames: ['function'], registers: [r] })
    const coldStarts = new Counter({
      name: 'sluice_cold_starts_total',
      help: 'Invocations that started a new instance.',
      labelNames: ['function'],
      registers: [r],
    })
    const instanceStart = new Histogram({
      name: 'sluice_instance_start_seconds',
      help: 'Time to create an instance in a worker host.',
      labelNames: ['function'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [r],
    })
    const instancesLost = new Counter({
      name: 'sluice_instances_lost_total',
      help: 'Instances lost to timeouts, memory limits or crashes.',
      labelNames: ['function'],
      registers: [r],
    })
    const hostRestarts = new Counter({ name: 'sluice_worker_host_restarts_total', help: 'Worker hosts that exited and were restarted.', registers: [r] })
    const timerSkips = new Counter({
      name: 'sluice_timer_skipped_total',
      help: 'Timer ticks skipped because the previous run was still going.',
      labelNames: ['function'],
      registers: [r],
    })

    new Gauge({
      name: 'sluice_backlog_events',
      help: 'Events accepted and not yet finished, per function (scale gateway instances on its sum).',
      labelNames: ['function'],
      registers: [r],
      collect() {
        this.reset()
        for (const f of snapshot().functions) this.set({ function: f.name }, f.backlog)
      },
    })
    new Gauge({
      name: 'sluice_instances',
      help: 'Running instances per function.',
      labelNames: ['function', 'state'],
      registers: [r],
      collect() {
        this.reset()
        for (const f of snapshot().functions) {
          this.set({ function: f.name, state: 'busy' }, f.busy)
          this.set({ function: f.name, state: 'idle' }, f.instances - f.busy)
        }
      },
    })
    new Gauge({
      name: 'sluice_waiting_requests',
      help: 'Batches waiting for an instance, per function.',
      labelNames: ['function'],
      registers: [r],
      collect() {
        this.reset()
        for (const f of snapshot().functions) this.set({ function: f.name }, f.waiting)
      },
    })
    new Gauge({
      name: 'sluice_connection_up',
      help: '1 while a trigger connection is up.',
      labelNames: ['function', 'kind', 'connection'],
      registers: [r],
      collect() {
        this.reset()
        for (const c of snapshot().connections) this.set({ function: c.function, kind: c.kind, connection: c.connection ?? '' }, c.up ? 1 : 0)
      },
    })
    new Gauge({
      name: 'sluice_source_lag',
      help: 'Events at the source not yet read by the gateway (Kafka consumer lag, Event Hubs), per partition where known.',
      labelNames: ['function', 'kind', 'connection', 'source'],
      registers: [r],
      collect() {
        this.reset()
        for (const l of snapshot().lag) this.set({ function: l.function, kind: l.kind, connection: l.connection ?? '', source: l.source }, l.lag)
      },
    })
    new Gauge({
      name: 'sluice_worker_hosts_up',
      help: 'Worker-host processes running.',
      registers: [r],
      collect() {
        this.set(snapshot().hostsUp)
      },
    })

    const on = <T extends { gateway: number }>(name: string, fn: (m: T) => void) => {
      const handler = (m: unknown) => {
        // diagnostics_channel rethrows a subscriber's error on the next tick (an uncaught
        // exception): what this feeds is best-effort, the event path must never see it fail.
        try {
          if ((m as T).gateway === gateway) fn(m as T)
        } catch {
          // dropped
        }
      }
      subscribe(name, handler)
      this.unsubscribers.push(() => unsubscribe(name, handler))
    }
    // Label-bound children, looked up once per function: prom-client hashes labels on every
    // observe otherwise, and invocations are the hot path.
    const perFunction = new Map<
      string,
      { duration: ReturnType<typeof duration.labels>; batchSize: ReturnType<typeof batchSize.labels>; wait: ReturnType<typeof wait.labels> }
    >()
    on<InvocationMessage>(CHANNELS.invocation, (m) => {
      let c = perFunction.get(m.function)
      if (!c) {
        c = { duration: duration.labels(m.function), batchSize: batchSize.labels(m.function), wait: wait.labels(m.function) }
        perFunction.set(m.function, c)
      }
      invocations.inc({ function: m.function, kind: m.kind, outcome: m.ok ? 'ok' : 'error' })
      c.duration.observe(m.durationMs / 1000)
      c.batchSize.observe(m.size)
      c.wait.observe(m.waitMs / 1000)
      if (m.failed > 0) failedEvents.inc({ function: m.function }, m.failed)
      if (m.coldStart) coldStarts.inc({ function: m.function })
    })
    on<RetryMessage>(CHANNELS.retry, (m) => retries.inc({ function: m.function }))
    on<DeadMessage>(CHANNELS.dead, (m) => dead.inc({ function: m.function }))
    on<InstanceMessage>(CHANNELS.instance, (m) => {
      if (m.action === 'start' && m.ms !== undefined) instanceStart.observe({ function: m.function }, m.ms / 1000)
      if (m.action === 'lost') instancesLost.inc({ function: m.function })
    })
    on<HostMessage>(CHANNELS.host, (m) => {
      if (m.action === 'down') hostRestarts.inc()
    })
    on<TimerSkipMessage>(CHANNELS.timerSkip, (m) => timerSkips.inc({ function: m.function }))
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }

  close(): void {
    for (const u of this.unsubscribers.splice(0)) u()
  }
}
