/**
 * What the router lets into a batch, and what it reads back from a function's result. Neither
 * throws: a hostile event becomes an error for its dead letter, a hostile result a plain value.
 */
import { hasCode, type ErrorInfo } from '../errors.js'
import { EVENT_LIMITS, jsonDepth, type TriggerEvent } from '../sdk/index.js'
import { depthExceeds, isStackOverflow, reasonOf } from './safe-json.js'

/** Depth of an event's JSON: the body's limit plus the event object around it. */
const MAX_EVENT_JSON_DEPTH = EVENT_LIMITS.maxDepth + 1

const err = (code: ErrorInfo['code'], message: string): ErrorInfo => ({ code, message, retriable: false })

/**
 * The event's JSON without `attempt` (`json`) when it may go to a function, else the error its
 * dead letter gets: SLUICE_ERR_EVENT_INVALID (not a JSON object, no id, not JSON data),
 * SLUICE_ERR_EVENT_TOO_DEEP, SLUICE_ERR_EVENT_TOO_LARGE, or the connector's `rejected` error.
 */
export function checkEvent(event: TriggerEvent): Checked {
  if (event === null || typeof event !== 'object') return { error: err('SLUICE_ERR_EVENT_INVALID', 'the event is not a JSON object') }
  let json: string | undefined
  try {
    const r: unknown = event.rejected
    if (r !== undefined) {
      if (hasCode(r)) return { error: err(r.code, typeof r.message === 'string' ? r.message.slice(0, 2000) : r.code) }
      return { error: err('SLUICE_ERR_EVENT_INVALID', 'the connector refused the event without a valid error code') }
    }
    if (event.rawBody !== undefined) {
      const raw = checkRaw(event)
      if (raw !== undefined) return raw
      event = { ...event, rawBody: undefined, body: bodyOfRaw(event.rawBody) }
    }
    // `attempt` is the router's to set: a connector's value only seeds the count.
    json = JSON.stringify(event.attempt === undefined ? event : { ...event, attempt: undefined })
  } catch (e) {
    if (isStackOverflow(e))
      return { error: err('SLUICE_ERR_EVENT_TOO_DEEP', `the event nests too deep to serialize; the limit is ${EVENT_LIMITS.maxDepth} levels`) }
    if (e instanceof RangeError)
      return {
        error: err(
          'SLUICE_ERR_EVENT_TOO_LARGE',
          `the event is too large to serialize (${reasonOf(e)}); the limit is ${EVENT_LIMITS.maxChars} characters of JSON`,
        ),
      }
    return { error: err('SLUICE_ERR_EVENT_INVALID', `the event is not JSON data: ${reasonOf(e)}`) }
  }
  if (typeof json !== 'string' || json.charCodeAt(0) !== 123 /* { */) return { error: err('SLUICE_ERR_EVENT_INVALID', 'the event is not a JSON object') }
  if (json.length > EVENT_LIMITS.maxChars) {
    return { json, error: err('SLUICE_ERR_EVENT_TOO_LARGE', `the event is ${json.length} characters of JSON; the limit is ${EVENT_LIMITS.maxChars}`) }
  }
  // Stringify output is balanced: nesting past the limit takes more than twice as many characters.
  if (json.length > 2 * MAX_EVENT_JSON_DEPTH && tooDeep(json, MAX_EVENT_JSON_DEPTH)) {
    return {
      json,
      error: err(
        'SLUICE_ERR_EVENT_TOO_DEEP',
        `the event nests more than ${EVENT_LIMITS.maxDepth} levels of arrays and objects below it; the limit is ${EVENT_LIMITS.maxDepth}`,
      ),
    }
  }
  if (typeof event.id !== 'string' || event.id === '') return { json, error: err('SLUICE_ERR_EVENT_INVALID', 'the event has no id') }
  return { json }
}

/**
 * With `raw` (a raw body that goes to the isolate as the source delivered it): `json` is the
 * event's other members, without braces (`"id":...,"meta":{...}`), and `raw` the body's text.
 * Without: `json` is the event's whole JSON (without `attempt`).
 */
export type Checked = { json: string; raw?: string; error?: undefined } | { json?: string; raw?: undefined; error: ErrorInfo }

/** An admitted event's size in a batch, in characters of JSON (about: the batch's `body` member of a raw one). */
export const checkedSize = (c: { json: string; raw?: string | undefined }): number => (c.raw === undefined ? c.json.length : c.json.length + c.raw.length + 10)

/**
 * The JSON of an admitted event (for its dead letter), `{...}` around the members, with a raw
 * body spliced in when it parses as exactly one JSON value, else as a string (what the function
 * saw). Not on the hot path: a raw body is spliced into no other JSON.
 */
export function checkedJson(c: { json: string; raw?: string | undefined }): string {
  if (c.raw === undefined) return c.json
  let body: string
  try {
    JSON.parse(c.raw)
    body = c.raw
  } catch {
    body = JSON.stringify(c.raw)
  }
  return `{${c.json},"body":${body}}`
}

/** A raw body as a value: parsed when it is JSON, else its text (what decodeText gives). */
export function bodyOfRaw(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw
  try {
    return JSON.parse(raw) as unknown
  } catch {
    return raw
  }
}

/** True when `text` holds at most `limit` brackets that open (in strings or not): it cannot nest deeper. */
function fewBrackets(text: string, limit: number): boolean {
  let n = 0
  for (let i = text.indexOf('{'); i >= 0; i = text.indexOf('{', i + 1)) if (++n > limit) return false
  for (let i = text.indexOf('['); i >= 0; i = text.indexOf('[', i + 1)) if (++n > limit) return false
  return true
}

/** Whether JSON text nests deeper than `limit`, by a bracket count first (no scan for most texts). */
const tooDeep = (text: string, limit: number): boolean => !fewBrackets(text, limit) && jsonDepth(text, limit) > limit

/**
 * An event with `rawBody` (see TriggerEvent): its members but the body as JSON, and the body's
 * text, or its error. The text is not spliced into the event's JSON (so it need not be scanned
 * for what could close its value early): the batch carries it beside the events (batch-json.ts)
 * and the isolate parses it on its own. Undefined when the event's other fields are not the
 * plain strings and object a connector sets: the caller then parses the text in the gateway.
 */
function checkRaw(event: TriggerEvent): Checked | undefined {
  const { id, source, key, time, meta, rawBody } = event
  if (typeof rawBody !== 'string' || typeof id !== 'string' || id === '' || typeof source !== 'string' || typeof time !== 'string') return undefined
  if ((key !== undefined && typeof key !== 'string') || meta === null || typeof meta !== 'object' || Array.isArray(meta)) return undefined
  if (tooDeep(rawBody, EVENT_LIMITS.maxDepth))
    return {
      error: err(
        'SLUICE_ERR_EVENT_TOO_DEEP',
        `the payload nests arrays and objects (brackets) more than ${EVENT_LIMITS.maxDepth} levels deep; the limit is ${EVENT_LIMITS.maxDepth}`,
      ),
    }
  const metaJson: unknown = JSON.stringify(meta)
  if (typeof metaJson !== 'string' || metaJson.charCodeAt(0) !== 123 /* { */) return undefined
  // One flat string by join: a template would leave a rope of a dozen parts per event, which
  // the batch's flattening walks again (slower than copying it once here, issue 11).
  const json = [
    '"id":',
    quote(id),
    ',"source":',
    sourceJson.of(source),
    key === undefined ? '' : ',"key":',
    key === undefined ? '' : keyJson.of(key),
    ',"time":',
    timeJson.of(time),
    ',"meta":',
    metaJson,
  ].join('')
  const checked: Checked = { json, raw: rawBody }
  const size = checkedSize(checked)
  if (size > EVENT_LIMITS.maxChars) {
    return {
      json: checkedJson(checked),
      error: err('SLUICE_ERR_EVENT_TOO_LARGE', `the event is ${size} characters of JSON; the limit is ${EVENT_LIMITS.maxChars}`),
    }
  }
  if (metaJson.length > 2 * EVENT_LIMITS.maxDepth && tooDeep(metaJson, EVENT_LIMITS.maxDepth)) {
    return {
      json: checkedJson(checked),
      error: err(
        'SLUICE_ERR_EVENT_TOO_DEEP',
        `the event nests more than ${EVENT_LIMITS.maxDepth} levels of arrays and objects below it; the limit is ${EVENT_LIMITS.maxDepth}`,
      ),
    }
  }
  return checked
}

/** Characters JSON.stringify escapes in a string: `"`, `\`, controls and (lone) surrogates. */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/

/** JSON.stringify(s) for a string; plain text (most ids, topics, times) without the serializer. */
function quote(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`
}

/**
 * The JSON of the string quoted last: events of a source arrive in runs with the same source,
 * key and time (a backlog of one topic or queue, a time formatted once per millisecond).
 */
class LastQuoted {
  private text: string | undefined
  private json = ''
  of(s: string): string {
    if (s !== this.text) {
      this.json = quote(s)
      this.text = s
    }
    return this.json
  }
}
const sourceJson = new LastQuoted()
const keyJson = new LastQuoted()
const timeJson = new LastQuoted()

/**
 * Why a synchronous call's return value cannot go back to its caller as JSON (an HTTP reply): it
 * nests deeper than events may. Undefined when it can.
 */
export function syncResultError(fn: string, value: unknown): ErrorInfo | undefined {
  if (!depthExceeds(value, EVENT_LIMITS.maxDepth)) return undefined
  return err('SLUICE_ERR_FUNCTION_RESULT_INVALID', `function ${fn} returned a value nested more than ${EVENT_LIMITS.maxDepth} levels deep`)
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
