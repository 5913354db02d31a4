/**
 * Turning a message's bytes into an event body, for every stream connector: one place decides
 * what is text, what is JSON, and what no function should ever be handed (issue 9).
 */
import { isUtf8 } from 'node:buffer'
import type { ErrorInfo } from '../errors.js'
import { LIMITS } from '../sandbox/protocol.js'

/** What an event may be: the router dead-letters anything beyond these (and connectors refuse it before parsing). */
export const EVENT_LIMITS = {
  /** Nesting of arrays and objects in a body. Deeper JSON is SLUICE_ERR_EVENT_TOO_DEEP. */
  maxDepth: 512,
  /** An event's JSON, in characters (the same as the result limit). Larger is SLUICE_ERR_EVENT_TOO_LARGE. */
  maxChars: LIMITS.resultBytes,
  /** Raw payload kept in the dead letter of a refused payload; the rest is cut (meta says so). */
  keptBytes: 16 * 1024 * 1024,
} as const

export interface DecodedPayload {
  /** Parsed JSON, else the UTF-8 text, else base64. For a refused payload: its raw text or base64. */
  body: unknown
  /** body is base64 (the bytes are not UTF-8): connectors say so in meta. */
  base64: boolean
  /**
   * Set when the payload must not reach a function: hand the event to the router with
   * `TriggerEvent.rejected` set to this, and it dead-letters it at once.
   */
  rejected?: ErrorInfo
  /** Set when only the first EVENT_LIMITS.keptBytes of a refused payload are in body: the full size. */
  truncatedFrom?: number
  /**
   * With `raw: true`, text that looks like JSON comes back here, not parsed (body is then
   * undefined): put it in `TriggerEvent.rawBody`. The router checks its depth and the isolate
   * parses it, so the gateway never builds the value nor serializes it again.
   */
  raw?: string
}

/**
 * Deepest nesting of arrays and objects in JSON text (brackets outside strings). Stops counting
 * once the depth passes `limit` and returns that depth. Meaningful for valid JSON only.
 */
export function jsonDepth(text: string, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0
  let max = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 /* " */) {
      i = stringEnd(text, i)
      if (i < 0) return max
    } else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max) {
        max = depth
        if (max > limit) return max
      }
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--
  }
  return max
}

/**
 * Where the string that opens at `open` (a `"`) closes: the next `"` not escaped by an odd run of
 * backslashes, or -1 when the text ends inside the string. indexOf skips the string's characters
 * in native code: most of a JSON payload's text is inside strings (issue 11).
 */
function stringEnd(text: string, open: number): number {
  let q = open
  for (;;) {
    q = text.indexOf('"', q + 1)
    if (q < 0) return -1
    let b = q - 1
    // Stops at the opening quote at the latest.
    while (text.charCodeAt(b) === 92 /* \ */) b--
    if ((q - b) % 2 === 1) return q
  }
}

/** Whether text may be JSON, from its first non-space character (JSON.parse throws on the rest). */
function maybeJson(s: string): boolean {
  let i = 0
  while (i < s.length && (s.charCodeAt(i) === 32 || s.charCodeAt(i) === 10 || s.charCodeAt(i) === 13 || s.charCodeAt(i) === 9)) i++
  const c = s.charCodeAt(i)
  return c === 123 || c === 91 || c === 34 || c === 45 || (c >= 48 && c <= 57) || c === 116 || c === 102 || c === 110
}

/**
 * Text as a body: parsed JSON when `json` and it is JSON, else the text itself. Text whose
 * brackets (outside strings) nest deeper than EVENT_LIMITS.maxDepth is refused
 * (SLUICE_ERR_EVENT_TOO_DEEP) with the text as body, before JSON.parse: the deep value is never
 * built (3 million nested arrays from 6 MB of "[" would be).
 */
export function decodeText(text: string, json = true): DecodedPayload {
  if (!json || !maybeJson(text)) return { body: text, base64: false }
  if (jsonDepth(text, EVENT_LIMITS.maxDepth) > EVENT_LIMITS.maxDepth) {
    return {
      body: text,
      base64: false,
      rejected: {
        code: 'SLUICE_ERR_EVENT_TOO_DEEP',
        message: `the payload nests arrays and objects (brackets) more than ${EVENT_LIMITS.maxDepth} levels deep; the limit is ${EVENT_LIMITS.maxDepth}`,
        retriable: false,
      },
    }
  }
  try {
    return { body: JSON.parse(text) as unknown, base64: false }
  } catch {
    return { body: text, base64: false }
  }
}

/**
 * A message payload as a body: UTF-8 text (parsed when `json` and it is JSON, see decodeText),
 * else base64. Payloads larger than EVENT_LIMITS.maxChars are refused (SLUICE_ERR_EVENT_TOO_LARGE)
 * without parsing, keeping their first EVENT_LIMITS.keptBytes as text or base64. `raw: true`:
 * JSON-looking text is returned unparsed in `raw` (see DecodedPayload.raw).
 */
export function decodePayload(bytes: Uint8Array, opts: { json?: boolean; raw?: boolean } = {}): DecodedPayload {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length > EVENT_LIMITS.maxChars) {
    const kept = buf.length > EVENT_LIMITS.keptBytes ? buf.subarray(0, EVENT_LIMITS.keptBytes) : buf
    // A cut can split a UTF-8 sequence: decide text or base64 on the kept bytes.
    const text = isUtf8(kept) ? kept.toString('utf8') : undefined
    const out: DecodedPayload = {
      body: text ?? kept.toString('base64'),
      base64: text === undefined,
      rejected: { code: 'SLUICE_ERR_EVENT_TOO_LARGE', message: `the payload is ${buf.length} bytes; the limit is ${EVENT_LIMITS.maxChars}`, retriable: false },
    }
    if (kept !== buf) out.truncatedFrom = buf.length
    return out
  }
  if (!isUtf8(buf)) return { body: buf.toString('base64'), base64: true }
  const text = buf.toString('utf8')
  if (opts.raw === true && (opts.json ?? true) && maybeJson(text)) return { body: undefined, base64: false, raw: text }
  return decodeText(text, opts.json ?? true)
}
