/**
 * Types for function authors: `import type { Handler, MqttEvent, Context } from 'sluice/function'`
 * (or from 'sluice'). Types only: this module has no run-time content and imports nothing, so a
 * function that imports it bundles nothing extra and it type-checks without Node's types (a
 * function runs in an isolate with no Node built-ins).
 *
 * The meta fields mirror what each connector builds (connectors/<kind>/message.ts, events.ts and
 * the HTTP and timer connectors); keep them in step when a connector changes what it sends.
 */

/** One event as a function receives it. Everything in it is JSON data. */
export interface FunctionEvent<Body = unknown, Meta = Record<string, unknown>> {
  /** Unique per source message: a broker message id, `<topic>-<partition>-<offset>`, a request id. */
  id: string
  /** Where it came from, e.g. `mqtt://devices/stations/17/telemetry`, `timer://nightly-report`. */
  source: string
  /** Ordering key: events with the same key run in order, other keys in parallel. */
  key?: string
  /** When the source produced it (ISO 8601). */
  time: string
  /**
   * The payload: parsed JSON when the source carried JSON, else the text (bytes that are not
   * UTF-8 arrive as base64, and the meta says so). The type parameter is a promise the source
   * keeps, not a check: validate bodies from devices you do not control.
   */
  body: Body
  /** Source attributes and position; see each trigger's event type. */
  meta: Meta
  /** 1 on the first delivery, then counts retries (after the retry policy's backoff). */
  attempt: number
}

/** MQTT 5 user properties: a name may repeat, then its values come as a list. */
export type MqttUserProperties = Record<string, string | string[]>

/** What an MQTT trigger's event carries besides the body (connectors/mqtt/message.ts). */
export interface MqttMeta {
  /** The topic the message was published to (not the subscription filter). */
  topic: string
  qos: 0 | 1 | 2
  retain: boolean
  /** The broker sent it again (an earlier delivery got no PUBACK). */
  dup: boolean
  /** null for QoS 0. */
  packetId: number | null
  /** Present when the payload was not UTF-8: the body is its base64 text. */
  encoding?: 'base64'
  /**
   * Set on a replayed dead letter whose payload was over the event limits: the body is its raw
   * text, cut to the first bodyBytes bytes kept (such events never reach a function otherwise).
   */
  bodyTruncated?: true
  bodyBytes?: number
  /** MQTT 5 properties, present when the publisher set them. */
  userProperties?: MqttUserProperties
  contentType?: string
  responseTopic?: string
  /** UTF-8 text, or base64 when correlationDataEncoding says so. */
  correlationData?: string
  correlationDataEncoding?: 'base64'
  payloadFormatIndicator?: 0 | 1
  messageExpiryInterval?: number
}

/** What an AMQP (RabbitMQ) trigger's event carries besides the body (connectors/amqp/message.ts). */
export interface AmqpMeta {
  queue: string
  /** The exchange it was published to ('' for the default exchange). */
  exchange: string
  routingKey: string
  redelivered: boolean
  deliveryTag: number
  /** How often it was delivered: x-delivery-count + 1 on quorum queues, the gateway's own count on classic ones. */
  deliveryCount: number
  /** Message headers as JSON (byte arrays as UTF-8 text, 64-bit integers as numbers). */
  headers: Record<string, unknown>
  /** Present when the content was not UTF-8: the body is its base64 text. */
  encoding?: 'base64'
  /**
   * Set on a replayed dead letter whose payload was over the event limits: the body is its raw
   * text, cut to the first bodyBytes bytes kept (such events never reach a function otherwise).
   */
  bodyTruncated?: true
  bodyBytes?: number
  /** Message properties, present when the publisher set them. */
  messageId?: string
  correlationId?: string
  contentType?: string
  contentEncoding?: string
  replyTo?: string
  type?: string
  appId?: string
  priority?: number
}

/** What a Kafka trigger's event carries besides the body (connectors/kafka/message.ts). */
export interface KafkaMeta {
  topic: string
  partition: number
  offset: number
  /** Milliseconds since the epoch (producer or log-append time); the raw text when it is no valid date. */
  timestamp: number | string
  /** The message key as UTF-8 text (base64 when it is not text), null without a key. */
  key: string | null
  /** Header values as UTF-8 text; a header sent several times comes as a list. */
  headers: Record<string, string | string[] | null>
  /** Present when the value was not UTF-8: the body is its base64 text. A tombstone's body is null. */
  encoding?: 'base64'
}

/** What an Event Hubs trigger's event carries besides the body (connectors/eventhubs/events.ts). */
export interface EventHubsMeta {
  eventHub: string
  consumerGroup: string
  partitionId: string
  offset: string
  sequenceNumber: number
  /** When the service enqueued it (ISO 8601). */
  enqueuedTimeUtc: string
  partitionKey?: string
  /** Application properties as JSON (dates as ISO text, bytes as base64). */
  properties?: Record<string, unknown>
  contentType?: string
  messageId?: string | number
  correlationId?: string | number
  /** Present when the body was bytes that are not UTF-8: the body is their base64 text. */
  bodyEncoding?: 'base64'
  /**
   * Set on a replayed dead letter whose payload was over the event limits: the body is its raw
   * text, cut to the first bodyBytes bytes kept (such events never reach a function otherwise).
   */
  bodyTruncated?: true
  bodyBytes?: number
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS'

/** What an HTTP trigger's event carries besides the body (connectors/http/http-connector.ts). */
export interface HttpMeta<Params extends string = string> {
  method: HttpMethod
  /** Path without the query, e.g. `/api/stations/st-007`. */
  path: string
  /** Path and query as requested. */
  url: string
  /** Route parameters: `stations/{id}` gives `params.id`; a `{*rest}` wildcard gives `params.rest`. */
  params: { [K in Params]: string }
  /** A parameter given several times comes as a list. */
  query: Record<string, string | string[]>
  /** Lower-case names. Credentials (authorization, cookie, x-functions-key) are never passed on. */
  headers: Record<string, string | string[] | undefined>
  ip: string
}

/** What a timer trigger's event carries besides the body (connectors/timer/timer-connector.ts). */
export interface TimerMeta {
  schedule: string
  /** IANA zone the schedule runs in; UTC unless the trigger sets `timezone`. */
  timezone: string
  isPastDue: boolean
}

/** The body of a timer tick. */
export interface TimerBody {
  /** The tick this run is for (ISO 8601). */
  scheduledAt: string
  /** True for a missed tick run late (catchUp: latest after downtime). */
  isPastDue: boolean
  schedule: string
  /** Ticks as last recorded: when the previous tick ran, when the next is due. */
  scheduleStatus: { last?: string; next?: string; lastUpdated?: string }
}

/** An MQTT message. `Body`: the payload's type, e.g. `MqttEvent<Telemetry>`. */
export type MqttEvent<Body = unknown> = FunctionEvent<Body, MqttMeta>
/** An AMQP (RabbitMQ) message. */
export type AmqpEvent<Body = unknown> = FunctionEvent<Body, AmqpMeta>
/** A Kafka record. */
export type KafkaEvent<Body = unknown> = FunctionEvent<Body, KafkaMeta>
/** An Azure Event Hubs event. */
export type EventHubsEvent<Body = unknown> = FunctionEvent<Body, EventHubsMeta>
/**
 * An HTTP request: always one per invocation. `Params`: the route's parameter names, e.g.
 * `HttpEvent<unknown, 'id'>` for `stations/{id}`. JSON bodies arrive parsed, text as a string,
 * other content types as base64 text; no body is null.
 */
export type HttpEvent<Body = unknown, Params extends string = string> = FunctionEvent<Body, HttpMeta<Params>>
/** A timer tick: always one per invocation. */
export type TimerEvent = FunctionEvent<TimerBody, TimerMeta>

/** Any trigger's event. */
export type AnyEvent = MqttEvent | AmqpEvent | KafkaEvent | EventHubsEvent | HttpEvent | TimerEvent

/**
 * The function's log: `ctx.log('text', value)` writes at info, or pick a level. Arguments are
 * joined with spaces (objects as JSON, errors with their stack) into one line that the gateway
 * writes with the function name and invocation id. `console.log` and friends write here too.
 */
export interface Log {
  (...args: unknown[]): void
  debug(...args: unknown[]): void
  info(...args: unknown[]): void
  warn(...args: unknown[]): void
  error(...args: unknown[]): void
}

/**
 * The second argument of every function: all the function can reach outside its own code.
 * `Outputs`: the names under the function's `outputs:` in the YAML, e.g. `Context<'alerts'>`.
 */
export interface Context<Outputs extends string = string> {
  /** Unique per invocation; it is in every log line of the run and in dead letters. */
  readonly invocationId: string
  /** The function's name in the YAML. */
  readonly functionName: string
  /** When the run is stopped (milliseconds since the epoch): the start plus timeoutMs. */
  readonly deadline: number
  /** Milliseconds left before the deadline (negative once it has passed). */
  remainingMs(): number
  readonly log: Log
  /**
   * Writes `value` (JSON data) to the named output binding. Messages are sent after the function
   * returns and confirmed by the broker before the input is acknowledged; if the run fails they
   * are not sent. An unknown name throws SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN.
   */
  output(name: Outputs, value: unknown): void
}

/**
 * What a batch function (every trigger but HTTP) may return: the events that failed, by id, with
 * a reason for the dead letter when you have one. Only those are retried (then dead-lettered);
 * the rest count as done. Anything else returned is kept with the invocation, not interpreted.
 */
export interface BatchResult {
  failed?: Array<string | { id: string; reason?: string }>
}

/**
 * What an HTTP function may return to shape the reply. Any other value is sent as a 200 JSON body.
 * `body`: a string is sent as is, other values as JSON; with `isBase64Encoded: true` a base64
 * string is decoded and sent as bytes.
 */
export interface HttpResponse {
  status?: number
  headers?: Record<string, string | number | boolean>
  body?: unknown
  isBase64Encoded?: boolean
}

/**
 * The type of a function module's default export: it receives a batch (always an array; an HTTP
 * request or timer tick is a batch of one) and the context.
 *
 * ```ts
 * const handler: Handler<MqttEvent<Telemetry>, BatchResult, 'alerts'> = async (events, ctx) => { ... }
 * export default handler
 * ```
 */
export type Handler<E extends FunctionEvent<unknown, unknown> = AnyEvent, R = unknown, Outputs extends string = string> = (
  events: E[],
  ctx: Context<Outputs>,
) => R | Promise<R>
