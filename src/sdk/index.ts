/**
 * The connector SDK: everything a connector may import from the core. Connectors never reach into
 * the router, scheduler or sandbox; they receive a ConnectorContext and hand events to `deliver`.
 */
import type { TSchema } from '@sinclair/typebox'
import type { ErrorInfo } from '../errors.js'

export type { ErrorInfo, ErrorCode } from '../errors.js'
export { SluiceError, hasCode } from '../errors.js'
export { backoffDelay, type BackoffPolicy } from './backoff.js'
export { nowIso } from './time.js'
export { httpEvent, invocationFailure, toReply } from './http.js'
export { decodePayload, decodeText, jsonDepth, EVENT_LIMITS, type DecodedPayload } from './payload.js'

/** A structured logger (pino-compatible subset). */
export interface Logger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
  child(bindings: Record<string, unknown>): Logger
}

/** One event as a function receives it. Everything in it is JSON data. */
export interface TriggerEvent {
  /** Unique per source message (a broker message id, `<partition>-<offset>`, a request id). */
  id: string
  /** Where it came from, e.g. `mqtt://devices/stations/17/telemetry`, `timer://nightly-report`. */
  source: string
  /** Ordering key: events with the same key run in order, other keys in parallel. */
  key?: string
  /** When the source produced it (ISO 8601). */
  time: string
  /** The payload: parsed JSON when the source carried JSON, else a string. */
  body: unknown
  /**
   * Set by a connector instead of `body` (leave body undefined): the payload's text as the source
   * delivered it, when it looks like JSON (decodePayload with `raw: true`). The gateway does not
   * parse it (the router checks its size and depth); the function receives it parsed as `body`,
   * or as the text itself when it is not JSON. Dead letters keep it as body.
   */
  rawBody?: string
  /** Source attributes and position (topic, qos, partition, offset, HTTP method and headers...). */
  meta: Record<string, unknown>
  /**
   * 1 on the first delivery to the function, then counts retries (set by the router). A connector
   * may set it to the source's delivery count when the source redelivers a message that never got
   * an outcome (after a crash): the router counts on from there and dead-letters the event at once
   * when that is beyond retry.maxAttempts (SLUICE_ERR_EVENT_REDELIVERY_LIMIT).
   */
  attempt?: number
  /**
   * Set by a connector when the message must not reach a function (decodePayload refused it:
   * SLUICE_ERR_EVENT_TOO_DEEP, SLUICE_ERR_EVENT_TOO_LARGE); `body` then holds the raw payload as
   * text or base64. The router dead-letters the event at once (the letter keeps body and meta,
   * not this field) and resolves its outcome `dead`: ack it at the source as usual.
   */
  rejected?: ErrorInfo
}

/**
 * Final outcome of one delivered event. Only `done` and `dead` may be acknowledged at the source.
 * `aborted` means the gateway stopped before finishing it: do NOT acknowledge; the source keeps
 * it and delivers it again (after restart, or to another gateway instance).
 */
export type Outcome = { status: 'done' } | { status: 'dead'; deadLetterId: string; error: ErrorInfo } | { status: 'aborted' }

/** Receives one event's durable outcome; `index` is the event's position in its `deliver` call. */
export type OutcomeListener = (index: number, outcome: Outcome) => void

/** The result of a synchronous invocation (HTTP trigger, admin invoke). */
export interface InvocationResult {
  invocationId: string
  ok: boolean
  /** The function's return value (JSON), when ok. */
  value?: unknown
  error?: ErrorInfo
  logs: LogLine[]
  /** Set when the per-invocation log limits cut or dropped lines (the last log line says so too). */
  logsDropped?: { droppedLines: number; truncated: number; droppedChars: number }
  outputs: Array<{ name: string; value: unknown }>
  durationMs: number
  coldStart: boolean
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error'
  msg: string
  time: number
}

/** Back-pressure signal of the function(s) a connector feeds. */
export interface Flow {
  /** True while the function's backlog is above its bound: stop reading from the source. */
  readonly paused: boolean
  /** Resolves when `paused` is false (at once if it already is). */
  wait(): Promise<void>
  /** Called with the new state on every change; returns an unsubscribe function. */
  onChange(listener: (paused: boolean) => void): () => void
}

/** Durable key/value state scoped to one connector instance (schedule status, offsets...). */
export interface ConnectorState {
  get<T>(key: string): Promise<T | undefined>
  /** Resolves once the value is durable. */
  set(key: string, value: unknown): Promise<void>
  /** Removes the value under `key` (durable when it resolves); true when there was one. */
  delete(key: string): Promise<boolean>
  /**
   * Claims `key` once across every gateway instance sharing the store (a timer tick, say).
   * True for exactly one caller until `ttlMs` passes.
   */
  claim(key: string, ttlMs: number): Promise<boolean>
  /**
   * Leases for work that one gateway instance must do at a time (a timer tick): acquire with a
   * short ttl, renew while the work goes on, then finish (nobody takes the key for `retainMs`) or
   * release (undone: the next acquirer takes it at once). A holder that stops renewing (it died)
   * loses the lease when the ttl passes; the next acquirer takes it over with `attempt` + 1.
   * Expiry is judged on the store's clock. The owner recorded is this gateway instance.
   */
  acquireLease(key: string, ttlMs: number): Promise<LeaseAttempt>
  /** False when the lease was lost (taken over after it expired, released or finished). */
  renewLease(lease: Lease, ttlMs: number): Promise<boolean>
  releaseLease(lease: Lease): Promise<boolean>
  finishLease(lease: Lease, retainMs: number): Promise<boolean>
  /**
   * Rows written with `compareAndSet` whose key starts with `prefix`, in key order. They live
   * apart from `get`/`set` values and are shared by every gateway instance on the same store.
   */
  list(prefix: string): Promise<VersionedRow[]>
  /**
   * Writes `value` under `key` only if the row still has `version` (undefined: only if there is no
   * row yet); resolves once durable with the row's new version, or undefined when another writer
   * changed the row first (read it again and decide). Optimistic concurrency for state several
   * instances update, such as partition ownership.
   */
  compareAndSet(key: string, value: unknown, version: string | undefined): Promise<string | undefined>
}

/** A lease held on a key (ConnectorState.acquireLease). Pass it back as is. */
export interface Lease {
  key: string
  /** Identifies this holding: renew, release and finish need it; a takeover changes it. */
  token: string
  /**
   * 1 for the first holder; +1 each time an expired lease is taken over (its holder died or lost
   * the store). A released lease keeps its count: the holder gave the work back on purpose.
   */
  attempt: number
}

/** The answer to acquireLease. */
export type LeaseAttempt =
  | { acquired: true; lease: Lease }
  | {
      acquired: false
      /** The current holder's owner id ('' when none is recorded). */
      owner: string
      /** The work was finished: nobody may take the key until its retention passes. */
      finished: boolean
      /** When the current holding (or the retention) ends, from now by the store's clock. */
      retryInMs: number
    }

/** A row of ConnectorState written with compareAndSet. */
export interface VersionedRow {
  key: string
  value: unknown
  /** Opaque; changes with every write. */
  version: string
}

/** Registers an HTTP route on the gateway's server (HTTP-facing connectors only). */
export interface HttpRoutes {
  route(def: HttpRouteDef): void
}

export interface HttpRequestInfo {
  method: string
  url: string
  path: string
  params: Record<string, string>
  query: Record<string, string | string[]>
  headers: Record<string, string | string[] | undefined>
  body: unknown
  ip: string
  requestId: string
}

export interface HttpReply {
  status: number
  headers: Record<string, string>
  body: unknown
}

export interface HttpRouteDef {
  methods: string[]
  /** fastify path, e.g. `/api/stations/:id`. */
  url: string
  /** function: the gateway checks the function's keys (x-functions-key) before `handle`. */
  auth: 'anonymous' | 'function'
  /** Resolves with the reply; throws a coded error (SluiceError) for an error reply. */
  handle(req: HttpRequestInfo, signal: AbortSignal): Promise<HttpReply>
  /**
   * Set when `handle` is exactly `httpEvent(req, source, wildcard)` run through `invoke` and
   * answered with `toReply` (src/sdk/http.ts): a worker host may then serve the route's requests
   * itself, on connections the gateway hands it (src/gateway/direct-http.ts).
   */
  direct?: { source: string; wildcard?: string }
}

export interface ConnectorContext {
  /** Aborted when the gateway stops. */
  signal: AbortSignal
  log: Logger
  /**
   * Hands events to the router. Resolves once per call, with one outcome per event in order,
   * when every outcome is durable. Never rejects for a single event's failure.
   *
   * `onOutcome`, when given, is called with each event's index (in `events`) and outcome as soon
   * as that outcome is durable: exactly once per event, always before the promise resolves, and
   * synchronously from inside the router (keep it short; a throw is logged and ignored). A
   * connector that delivers many events per call acks each one from here, so one event waiting
   * for a retry does not hold back the acks of the others.
   */
  deliver(events: TriggerEvent[], onOutcome?: OutcomeListener): Promise<Outcome[]>
  /**
   * Runs the function once, synchronously, on exactly these events (no batching, no retry, no
   * dead letters): the HTTP trigger's path. Output bindings are confirmed before it resolves.
   */
  invoke(events: TriggerEvent[], opts?: { signal?: AbortSignal }): Promise<InvocationResult>
  flow: Flow
  state: ConnectorState
  /** Present for connectors whose definition sets `http: true`. */
  http?: HttpRoutes
  /** Reports connection state for `GET /admin/health`. */
  setHealth(up: boolean, detail?: string): void
}

/** A running trigger source. */
export interface Connector {
  /** Resolves once subscribed and ready to deliver. Rejects with SLUICE_ERR_CONNECTOR_START. */
  start(ctx: ConnectorContext): Promise<void>
  /** Idempotent. Graceful by default: stops taking events and waits for in-flight outcomes. */
  stop(opts?: { force?: boolean }): Promise<void>
}

/** An output binding: publishes what functions write with `ctx.output(name, value)`. */
export interface OutputBinding {
  /** Resolves once the broker confirmed every message (publisher confirm, PUBACK, produce ack). */
  publish(values: unknown[]): Promise<void>
  close(): Promise<void>
}

/** Optional ability: a source that skips work (a timer tick during a run) and reports it. */
export interface SkipReporter {
  /** Registers the listener called with when each skipped unit was due. */
  onSkipped(listener: (dueAt: Date) => void): void
}

export function reportsSkips(x: object): x is SkipReporter {
  return typeof (x as Partial<SkipReporter>).onSkipped === 'function'
}

/**
 * Optional ability: a source that knows how far behind its head the gateway reads (Kafka consumer
 * lag, Event Hubs sequence-number distance). Feeds the `sluice_source_lag` gauge and the dashboard.
 * Called on every metrics scrape and every second by the dashboard feed: return cached values,
 * never do I/O here. A number is the total; a record gives it per partition (keys like
 * `telemetry/3`), summed for the function's total.
 */
export interface LagReporter {
  lag(): Record<string, number> | number
}

export function reportsLag(x: object): x is LagReporter {
  return typeof (x as Partial<LagReporter>).lag === 'function'
}

/** Optional ability: a probe that tells whether the connection works, for `sluice validate`. */
export interface ConnectionTester {
  testConnection(): Promise<void>
}

export function canTestConnection(x: object): x is ConnectionTester {
  return typeof (x as Partial<ConnectionTester>).testConnection === 'function'
}

/** A semantic problem found while validating a trigger or connection, with a key path. */
export interface OptionIssue {
  code: import('../errors.js').ErrorCode
  message: string
  /** Path below the trigger (or connection) object, e.g. ['schedule']. */
  path: Array<string | number>
}

export interface TriggerSpec<TTrigger, TConnection> {
  functionName: string
  trigger: TTrigger
  /** The function's maxBacklog: events the router takes before it pauses the flow. */
  maxBacklog?: number
  connectionName?: string
  connection?: TConnection
  /**
   * The gateway instance's id (config `instance.id`): a stable member identity for sources that
   * need one (default MQTT client ids, the Event Hubs owner id).
   */
  instanceId?: string
}

/**
 * A broker session a trigger holds under a client id (MQTT persistent sessions). The gateway
 * records its instance's sessions in the cluster registry, so that when the instance dies a live
 * one can drain what the broker queued in them (see ConnectorDefinition.takeOverSession).
 */
export interface SourceSession {
  clientId: string
  /** The subscription filter as sent to the broker (e.g. $share/group/topic). */
  filter: string
  /** True when the subscription is shared among instances ($share): other members get new messages. */
  shared: boolean
  /** Connector-specific details needed to resume the session (e.g. the protocol version). */
  detail?: Record<string, string | number | boolean>
}

/** Optional ability: a trigger that holds broker sessions under client ids. */
export interface SessionHolder {
  sessions(): SourceSession[]
}

export function holdsSessions(x: object): x is SessionHolder {
  return typeof (x as Partial<SessionHolder>).sessions === 'function'
}

/** What draining a dead instance's session did. */
export interface TakeoverReport {
  /** False when the broker had no session under that client id (nothing was queued). */
  sessionPresent: boolean
  /** Messages taken from the session and handed to the router. */
  messages: number
}

/** What a connector folder exports: its schemas and factories. */
export interface ConnectorDefinition<TTrigger = unknown, TConnection = unknown, TOutput = unknown> {
  kind: string
  /** Schema of a `connections:` entry of this kind (without `kind`). Absent: needs no connection. */
  connectionSchema?: TSchema
  triggerSchema: TSchema
  outputSchema?: TSchema
  /** The connector needs the gateway's HTTP server. */
  http?: boolean
  /** Semantic checks the schema cannot express. */
  validateTrigger?(trigger: TTrigger): OptionIssue[]
  createTrigger(spec: TriggerSpec<TTrigger, TConnection>): Connector
  /**
   * Drains a dead instance's session: connects under `session.clientId`, hands every queued
   * message to `ctx.deliver` with the trigger's usual ack rules, then ends the session at the
   * broker so it routes only to live members. Resolves once the session is ended; rejects with a
   * coded error when it could not be (the session stays, a later attempt retries).
   */
  takeOverSession?(spec: TriggerSpec<TTrigger, TConnection>, session: SourceSession, ctx: ConnectorContext): Promise<TakeoverReport>
  createOutput?(spec: {
    functionName: string
    outputName: string
    output: TOutput
    connectionName?: string
    connection?: TConnection
    log: Logger
  }): OutputBinding
}
export { Type, OneOf, Strict, type Static, type TSchema } from './schema.js'
