import type { ReceivedEventData } from '@azure/event-hubs'
import { decodePayload, EVENT_LIMITS, type DecodedPayload, type ErrorInfo, type TriggerEvent } from '../../src/sdk/index.js'

/** A value nested deeper than EVENT_LIMITS.maxDepth (jsonSafe refuses it instead of recursing on). */
class TooDeep extends Error {}

/** A value as plain JSON data: dates as ISO strings, bytes as base64, big integers as strings. */
export function jsonSafe(v: unknown, depth = 0): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v)
  if (typeof v === 'bigint') return v.toString()
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return undefined
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')
  if (depth >= EVENT_LIMITS.maxDepth) throw new TooDeep()
  if (Array.isArray(v)) return v.map((x) => jsonSafe(x, depth + 1) ?? null)
  if (v instanceof Map) return jsonSafe(Object.fromEntries(v), depth)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const j = jsonSafe(x, depth + 1)
    if (j !== undefined) out[k] = j
  }
  return out
}

const tooDeep = (what: string): ErrorInfo => ({
  code: 'SLUICE_ERR_EVENT_TOO_DEEP',
  message: `the event's ${what} nests more than ${EVENT_LIMITS.maxDepth} levels deep; the limit is ${EVENT_LIMITS.maxDepth}`,
  retriable: false,
})

/**
 * The body as a function gets it. The connector subscribes with skipParsingBodyAsJson, so a data
 * section arrives as bytes and decodePayload decides: JSON-looking UTF-8 text goes on unparsed
 * (`raw`: the router checks it, the isolate parses it), else UTF-8 text, else base64
 * (meta.bodyEncoding: base64); too large is `rejected` with the raw text. AMQP value and sequence
 * bodies are already decoded values, which may hold dates, bytes or big numbers.
 */
function bodyOf(e: ReceivedEventData): DecodedPayload {
  const body: unknown = e.body
  if (body instanceof Uint8Array) return decodePayload(body, { raw: true })
  try {
    return { body: jsonSafe(body) ?? null, base64: false }
  } catch (err) {
    if (err instanceof TooDeep || err instanceof RangeError) return { body: null, base64: false, rejected: tooDeep('AMQP value body') }
    throw err
  }
}

export interface EventOrigin {
  connection: string
  eventHub: string
  consumerGroup: string
  partitionId: string
}

/** The events' `source`: eventhubs://<connection>/<hub>/<partition>. */
export function sourceOf(o: EventOrigin): string {
  return `eventhubs://${o.connection}/${o.eventHub}/${o.partitionId}`
}

/**
 * One received event as a TriggerEvent: id `<partition>-<sequenceNumber>` (unique in the hub),
 * key = partition id (events of a partition run in order), time = enqueued time.
 */
export function toTriggerEvent(e: ReceivedEventData, o: EventOrigin, source = sourceOf(o)): TriggerEvent {
  const { body, base64, rejected, truncatedFrom, raw } = bodyOf(e)
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
  let metaRejected: ErrorInfo | undefined
  if (e.properties && Object.keys(e.properties).length > 0) {
    try {
      meta.properties = jsonSafe(e.properties)
    } catch (err) {
      if (!(err instanceof TooDeep || err instanceof RangeError)) throw err
      metaRejected = tooDeep('properties')
    }
  }
  if (e.contentType !== undefined) meta.contentType = e.contentType
  if (e.messageId !== undefined) meta.messageId = jsonSafe(e.messageId)
  if (e.correlationId !== undefined) meta.correlationId = jsonSafe(e.correlationId)
  if (base64) meta.bodyEncoding = 'base64'
  if (truncatedFrom !== undefined) {
    meta.bodyTruncated = true
    meta.bodyBytes = truncatedFrom
  }
  const event: TriggerEvent = {
    id: `${o.partitionId}-${e.sequenceNumber}`,
    source,
    key: o.partitionId,
    time: enqueued,
    body,
    meta,
  }
  if (raw !== undefined) event.rawBody = raw
  // The router dead-letters a rejected event at once; the checkpoint moves once the letter is durable.
  const refused = rejected ?? metaRejected
  if (refused) event.rejected = refused
  return event
}
