import type { ReceivedEventData } from '@azure/event-hubs'
import type { TriggerEvent } from '../../src/sdk/index.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A value as plain JSON data: dates as ISO strings, bytes as base64, big integers as strings. */
export function jsonSafe(v: unknown): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v)
  if (typeof v === 'bigint') return v.toString()
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return undefined
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')
  if (Array.isArray(v)) return v.map((x) => jsonSafe(x) ?? null)
  if (v instanceof Map) return jsonSafe(Object.fromEntries(v))
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const j = jsonSafe(x)
    if (j !== undefined) out[k] = j
  }
  return out
}

/**
 * The body as a function gets it: JSON bodies are parsed by the SDK already; other bytes become a
 * UTF-8 string, or base64 (with meta.bodyEncoding: base64) when they are not text.
 */
function bodyOf(e: ReceivedEventData): { body: unknown; base64?: true } {
  const body: unknown = e.body
  if (body instanceof Uint8Array) {
    try {
      return { body: utf8.decode(body) }
    } catch {
      return { body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'), base64: true }
    }
  }
  // A data section the SDK parsed as JSON is plain data already (the usual case, and the hot path);
  // AMQP value and sequence bodies may hold dates, bytes or big numbers.
  if (e.getRawAmqpMessage().bodyType === 'data') return { body: body ?? null }
  return { body: jsonSafe(body) ?? null }
}

export interface EventOrigin {
  connection: string
  eventHub: string
  consumerGroup: string
  partitionId: string
}

/**
 * One received event as a TriggerEvent: id `<partition>-<sequenceNumber>` (unique in the hub),
 * key = partition id (events of a partition run in order), time = enqueued time.
 */
export function toTriggerEvent(e: ReceivedEventData, o: EventOrigin): TriggerEvent {
  const { body, base64 } = bodyOf(e)
  const enqueued = e.enqueuedTimeUtc.toISOString()
  const meta: Record<string, unknown> = {
    eventHub: o.eventHub,
    consumerGroup: o.consumerGroup,
    partitionId: o.partitionId,
    offset: e.offset,
    sequenceNumber: e.sequenceNumber,
    enqueuedTimeUtc: enqueued,
  }
  if (e.partitionKey !== undefined && e.partitionKey !== null) meta.partitionKey = e.partitionKey
  if (e.properties && Object.keys(e.properties).length > 0) meta.properties = jsonSafe(e.properties)
  if (e.contentType !== undefined) meta.contentType = e.contentType
  if (e.messageId !== undefined) meta.messageId = jsonSafe(e.messageId)
  if (e.correlationId !== undefined) meta.correlationId = jsonSafe(e.correlationId)
  if (base64) meta.bodyEncoding = 'base64'
  return {
    id: `${o.partitionId}-${e.sequenceNumber}`,
    source: `eventhubs://${o.connection}/${o.eventHub}/${o.partitionId}`,
    key: o.partitionId,
    time: enqueued,
    body,
    meta,
  }
}
