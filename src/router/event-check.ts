/**
 * What the router lets into a batch, and what it reads back from a function's result. Neither
 * throws: a hostile event becomes an error for its dead letter, a hostile result a plain value.
 */
import { hasCode, type ErrorInfo } from '../errors.js'
import { EVENT_LIMITS, jsonDepth, type TriggerEvent } from '../sdk/index.js'
import { isStackOverflow, reasonOf } from './safe-json.js'

/** Depth of an event's JSON: the body's limit plus the event object around it. */
const MAX_EVENT_JSON_DEPTH = EVENT_LIMITS.maxDepth + 1

const err = (code: ErrorInfo['code'], message: string): ErrorInfo => ({ code, message, retriable: false })

/**
 * The event's JSON without `attempt` (`json`) when it may go to a function, else the error its
 * dead letter gets: SLUICE_ERR_EVENT_INVALID (not a JSON object, no id, not JSON data),
 * SLUICE_ERR_EVENT_TOO_DEEP, SLUICE_ERR_EVENT_TOO_LARGE, or the connector's `rejected` error.
 */
export function checkEvent(event: TriggerEvent): { json: string; error?: undefined } | { json?: string; error: ErrorInfo } {
  if (event === null || typeof event !== 'object') return { error: err('SLUICE_ERR_EVENT_INVALID', 'the event is not a JSON object') }
  let json: string | undefined
  try {
    const r: unknown = event.rejected
    if (r !== undefined) {
      if (hasCode(r)) return { error: err(r.code, typeof r.message === 'string' ? r.message.slice(0, 2000) : r.code) }
      return { error: err('SLUICE_ERR_EVENT_INVALID', 'the connector refused the event without a valid error code') }
    }
    // `attempt` is the router's to set: a connector's value only seeds the count.
    json = JSON.stringify(event.attempt === undefined ? event : { ...event, attempt: undefined })
  } catch (e) {
    if (isStackOverflow(e)) return { error: err('SLUICE_ERR_EVENT_TOO_DEEP', `the event nests too deep to serialize; the limit is ${EVENT_LIMITS.maxDepth} levels`) }
    if (e instanceof RangeError) return { error: err('SLUICE_ERR_EVENT_TOO_LARGE', `the event is too large to serialize (${reasonOf(e)}); the limit is ${EVENT_LIMITS.maxChars} characters of JSON`) }
    return { error: err('SLUICE_ERR_EVENT_INVALID', `the event is not JSON data: ${reasonOf(e)}`) }
  }
  if (typeof json !== 'string' || json.charCodeAt(0) !== 123 /* { */) return { error: err('SLUICE_ERR_EVENT_INVALID', 'the event is not a JSON object') }
  if (json.length > EVENT_LIMITS.maxChars) {
    return { json, error: err('SLUICE_ERR_EVENT_TOO_LARGE', `the event is ${json.length} characters of JSON; the limit is ${EVENT_LIMITS.maxChars}`) }
  }
  const depth = jsonDepth(json, MAX_EVENT_JSON_DEPTH)
  if (depth > MAX_EVENT_JSON_DEPTH) {
    return { json, error: err('SLUICE_ERR_EVENT_TOO_DEEP', `the event nests more than ${EVENT_LIMITS.maxDepth} levels of arrays and objects below it; the limit is ${EVENT_LIMITS.maxDepth}`) }
  }
  if (typeof event.id !== 'string' || event.id === '') return { json, error: err('SLUICE_ERR_EVENT_INVALID', 'the event has no id') }
  return { json }
}

/**
 * The events a batch function reported as failed: `{ failed: [id, ...] }` or
 * `{ failed: [{ id, reason }, ...] }` (mixed is fine), id -> reason. Undefined when the result
 * has no `failed` list. Entries of another shape are ignored.
 */
export function failedOf(value: unknown): Map<string, string | undefined> | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const failed = (value as { failed?: unknown }).failed
  if (!Array.isArray(failed)) return undefined
  const out = new Map<string, string | undefined>()
  for (const f of failed as unknown[]) {
    if (typeof f === 'string') {
      if (!out.has(f)) out.set(f, undefined)
    } else if (f !== null && typeof f === 'object' && typeof (f as { id?: unknown }).id === 'string') {
      const reason = (f as { reason?: unknown }).reason
      out.set((f as { id: string }).id, typeof reason === 'string' && reason !== '' ? reason.slice(0, MAX_REASON_CHARS) : undefined)
    }
  }
  return out
}
const MAX_REASON_CHARS = 2000
