import type { Message } from 'amqplib'
import { decodePayload, nowIso, type DecodedPayload, type TriggerEvent } from '../../src/sdk/index.js'

/**
 * The body a function sees: parsed JSON when the message holds JSON (whatever its content type
 * says, unless it is text/*), else the UTF-8 text, else (bytes that are not UTF-8) base64 with
 * meta.encoding: base64. JSON-looking text comes back unparsed in `raw` (the isolate parses it);
 * a payload past the event limits comes back `rejected` (see decodePayload).
 */
export function bodyOf(msg: Message): DecodedPayload {
  const type: unknown = msg.properties.contentType
  return decodePayload(msg.content, { json: !(typeof type === 'string' && type.startsWith('text/')), raw: true })
}

/** AMQP table values as JSON: byte arrays as UTF-8 text, 64-bit integers as numbers (or text when too large). */
export function jsonValue(v: unknown, depth = 0): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v)
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()
  if (Buffer.isBuffer(v)) return v.toString('utf8')
  if (v instanceof Date) return v.toISOString()
  if (depth > 8) return undefined
  if (Array.isArray(v)) return v.map((x) => jsonValue(x, depth + 1) ?? null)
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const j = jsonValue(x, depth + 1)
      if (j !== undefined) out[k] = j
    }
    return out
  }
  return undefined
}

export interface EventParams {
  id: string
  source: string
  queue: string
  attempt: number
  deliveries: number
}

/** Message properties copied to meta when present, in this order. */
const OPTIONAL = ['messageId', 'correlationId', 'contentType', 'contentEncoding', 'replyTo', 'type', 'appId', 'priority'] as const

/** One message as a TriggerEvent. key = the queue: messages of a queue run in order by default. */
export function toEvent(msg: Message, p: EventParams): TriggerEvent {
  const props = msg.properties
  const meta: Record<string, unknown> = {
    queue: p.queue,
    exchange: msg.fields.exchange,
    routingKey: msg.fields.routingKey,
    redelivered: msg.fields.redelivered,
    deliveryTag: msg.fields.deliveryTag,
    deliveryCount: p.deliveries,
    headers: jsonValue(props.headers ?? {}),
  }
  for (const k of OPTIONAL) {
    const v: unknown = props[k]
    if (v !== undefined && v !== null) meta[k] = jsonValue(v)
  }
  const ts: unknown = props.timestamp
  // AMQP timestamps are seconds; some producers send milliseconds.
  const time = typeof ts === 'number' && Number.isFinite(ts) && ts > 0 ? new Date(ts > 1e11 ? ts : ts * 1000).toISOString() : nowIso()
  const { body, base64, rejected, truncatedFrom, raw } = bodyOf(msg)
  if (base64) meta.encoding = 'base64'
  if (truncatedFrom !== undefined) {
    meta.bodyTruncated = true
    meta.bodyBytes = truncatedFrom
  }
  const event: TriggerEvent = { id: p.id, source: p.source, key: p.queue, time, body, meta }
  // JSON-looking text goes on unparsed: the router checks it, the isolate parses it.
  if (raw !== undefined) event.rawBody = raw
  // The router dead-letters a rejected payload at once (no function run); the ack follows the letter.
  if (rejected) event.rejected = rejected
  if (p.attempt > 1) event.attempt = p.attempt
  return event
}
