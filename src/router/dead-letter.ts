/**
 * Builds the event a dead letter stores. It must always be storable (the source acks the message
 * only once the letter is durable, so a letter the store cannot serialize would hold the message
 * forever): whatever the event holds, the result is plain JSON data of bounded depth and size.
 */
import { EVENT_LIMITS, jsonDepth, type TriggerEvent } from '../sdk/index.js'
import { asText, serialize } from './safe-json.js'

/** Nesting the letter's parts may keep as data; deeper parts are kept as JSON text. */
const MAX_DEPTH = EVENT_LIMITS.maxDepth + 1

/**
 * The stored form of `event`. `json` is its JSON from admission, when it had one: a letter of an
 * event that fits the limits is exactly that event (without `attempt` and `rejected`). Otherwise
 * each field is carried over on its own: a body that cannot be data becomes its JSON text (meta
 * `bodyEncoding: json-text`, `bodyTruncated` when cut at EVENT_LIMITS.keptBytes), or null with
 * meta `bodyDropped` saying why (cycles, BigInt); meta that cannot be kept becomes `{ metaDropped }`.
 */
export function letterEvent(event: TriggerEvent, json: string | undefined): TriggerEvent {
  if (json !== undefined && event.rejected === undefined && json.length <= EVENT_LIMITS.keptBytes && jsonDepth(json, MAX_DEPTH) <= MAX_DEPTH) {
    try {
      const parsed = JSON.parse(json) as TriggerEvent | null
      if (parsed !== null && typeof parsed === 'object') return parsed
    } catch {
      // fall through to the field-by-field copy
    }
  }
  const e: Partial<TriggerEvent> = event !== null && typeof event === 'object' ? event : {}
  const out: TriggerEvent = { id: asText(e.id), source: asText(e.source), time: asText(e.time), body: null, meta: {} }
  if (typeof e.key === 'string') out.key = asText(e.key)
  const meta = asData(e.meta)
  out.meta =
    meta.ok && meta.value !== null && typeof meta.value === 'object' && !Array.isArray(meta.value)
      ? (meta.value as Record<string, unknown>)
      : { metaDropped: meta.ok ? 'meta is not an object' : meta.reason }
  // A raw body (TriggerEvent.rawBody) that did not parse is kept as the text the source delivered.
  const body: unknown = typeof e.rawBody === 'string' ? e.rawBody : e.body
  if (typeof body === 'string') {
    out.body = body.length > EVENT_LIMITS.keptBytes ? body.slice(0, EVENT_LIMITS.keptBytes) : body
    if (body.length > EVENT_LIMITS.keptBytes) out.meta.bodyTruncated = true
    return out
  }
  const b = asData(body)
  if (b.ok) out.body = b.value
  else if (b.text !== undefined) {
    out.body = b.text
    out.meta.bodyEncoding = 'json-text'
    if (b.truncated) out.meta.bodyTruncated = true
  } else out.meta.bodyDropped = b.reason
  return out
}

type AsData = { ok: true; value: unknown } | { ok: false; reason: string; text?: string; truncated?: boolean }

/** A copy of `v` as storable data, or its JSON text when it nests too deep or is too large. */
function asData(v: unknown): AsData {
  if (v === undefined) return { ok: true, value: null }
  const s = serialize(v, EVENT_LIMITS.keptBytes)
  if (!s.ok) return { ok: false, reason: s.reason }
  if (s.truncated) return { ok: false, reason: 'too large', text: s.text, truncated: true }
  if (jsonDepth(s.text, MAX_DEPTH) > MAX_DEPTH) return { ok: false, reason: 'nested too deep', text: s.text }
  try {
    return { ok: true, value: JSON.parse(s.text) as unknown }
  } catch {
    return { ok: false, reason: 'not JSON data', text: s.text }
  }
}
