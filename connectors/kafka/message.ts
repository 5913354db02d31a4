import { isUtf8 } from 'node:buffer'
import type { KafkaMessage } from 'kafkajs'
import { decodePayload, nowIso, type ErrorInfo, type TriggerEvent } from '../../src/sdk/index.js'

/** UTF-8 text of `b`, or undefined when it is not valid UTF-8. */
function text(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined
}

/**
 * The text of a message key. Most keys are short ASCII (ids, names): those are checked here and
 * read as latin1 (the same characters), without the native UTF-8 validation and decode, two calls
 * into C++ per message (bench/README.md, session 9). Others: UTF-8 text, else undefined.
 */
function keyText(b: Buffer): string | undefined {
  if (b.length <= SHORT_KEY) {
    let i = 0
    while (i < b.length && (b[i] as number) < 0x80) i++
    if (i === b.length) return b.toString('latin1')
  }
  return text(b)
}
/** Longest key checked for ASCII in JavaScript. */
const SHORT_KEY = 64

/** The largest time a JavaScript Date holds (ms since the epoch). */
const MAX_DATE_MS = 8.64e15

// The messages of one producer batch mostly share a timestamp (milliseconds): its number, its
// validity and its ISO text are worked out once per distinct text, not once per message (a
// 13-digit string is no array index: Number() takes V8's slow path on it).
let lastTs = ''
let lastNum = 0
let lastValid = false
let lastIso = ''
/** Makes `last*` describe the timestamp whose text is `raw`. */
function readTimestamp(raw: string): void {
  if (raw === lastTs) return
  const ts = Number(raw)
  lastValid = Number.isFinite(ts) && ts > 0 && ts <= MAX_DATE_MS
  lastNum = ts
  lastIso = lastValid ? new Date(ts).toISOString() : ''
  lastTs = raw
}

/** decodePayload's options: JSON-looking text goes on unparsed (one object for every call). */
const RAW = { raw: true } as const

/**
 * A value as a function sees it: parsed JSON, else the UTF-8 string, else base64; null for a
 * tombstone. `rejected` is set for a value no function may get (too deep, too large).
 */
export function decodeValue(value: Buffer | null): { body: unknown; base64: boolean; rejected?: ErrorInfo } {
  if (value === null) return { body: null, base64: false }
  const d = decodePayload(value)
  return d.rejected ? { body: d.body, base64: d.base64, rejected: d.rejected } : { body: d.body, base64: d.base64 }
}

function headerText(v: Buffer | string | Array<Buffer | string> | undefined): string | string[] | null {
  if (v === undefined) return null
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : x.toString('utf8')))
  return typeof v === 'string' ? v : v.toString('utf8')
}

/** What every event of one partition shares: computed once per batch. */
export interface PartitionInfo {
  topic: string
  partition: number
  /** kafka://<connection>/<topic> */
  source: string
  /** `<topic>/<partition>`: the ordering key, and the prefix of per-message keys. */
  key: string
  /** `<topic>-<partition>-`: the prefix of event ids. */
  idPrefix: string
  /** orderBy: key: order per message key within the partition. */
  byKey: boolean
}

export function partitionInfo(topic: string, partition: number, connection: string, byKey: boolean): PartitionInfo {
  return { topic, partition, source: `kafka://${connection}/${topic}`, key: `${topic}/${partition}`, idPrefix: `${topic}-${partition}-`, byKey }
}

/**
 * The event of one Kafka message: id `<topic>-<partition>-<offset>`, `source`
 * kafka://<connection>/<topic>, `key` `<topic>/<partition>` (per-partition order) or, with
 * orderBy: key, `<topic>/<partition>/<message key>` (per-key order within the partition).
 *
 * Never throws. A timestamp that is no valid date (a producer writing nanoseconds: ~1.7e18)
 * keeps its raw value as a string in `meta.timestamp` and the event's `time` is the time of
 * reading. A JSON-looking value goes on unparsed as `rawBody` (the router checks its size and
 * depth, the isolate parses it); other values are the body (text, base64 with
 * `meta.encoding: base64`, null for a tombstone). A value no function may get (too large), and
 * a record that cannot be turned into an event at all, come back with `rejected` set and the raw
 * bytes as body (text, or base64 with `meta.encoding: base64`): the router dead-letters them and
 * the offset moves on (so does a raw body nested too deep: the router refuses it). `offset`:
 * the message's offset as a number, when the caller has it already.
 */
export function toEvent(m: KafkaMessage, p: PartitionInfo, offset?: number): TriggerEvent {
  try {
    return build(m, p, offset)
  } catch (e) {
    return unbuildable(m, p, e)
  }
}

function build(m: KafkaMessage, p: PartitionInfo, offset: number | undefined): TriggerEvent {
  // JSON-looking text goes on unparsed (rawBody): the router checks it, the isolate parses it.
  const d = m.value === null ? undefined : decodePayload(m.value, RAW)
  const key = m.key === null ? null : (keyText(m.key) ?? m.key.toString('base64'))
  readTimestamp(m.timestamp)
  const validTime = lastValid
  const headers: Record<string, string | string[] | null> = {}
  if (m.headers) for (const k in m.headers) headers[k] = headerText(m.headers[k])
  const meta: Record<string, unknown> = {
    topic: p.topic,
    partition: p.partition,
    offset: offset ?? Number(m.offset),
    timestamp: validTime ? lastNum : String(m.timestamp),
    key,
    headers,
  }
  if (d?.base64) meta.encoding = 'base64'
  const event: TriggerEvent = {
    id: p.idPrefix + m.offset,
    source: p.source,
    key: p.byKey && key !== null ? `${p.key}/${key}` : p.key,
    time: validTime ? lastIso : nowIso(),
    body: d === undefined ? null : d.body,
    meta,
  }
  if (d?.raw !== undefined) event.rawBody = d.raw
  if (d?.rejected) event.rejected = d.rejected
  return event
}

/** A record `build` could not handle: its raw bytes, dead-lettered by the router at once. */
function unbuildable(m: KafkaMessage, p: PartitionInfo, e: unknown): TriggerEvent {
  const raw = Buffer.isBuffer(m.value) ? m.value : null
  const asText = raw === null ? undefined : text(raw)
  const meta: Record<string, unknown> = { topic: p.topic, partition: p.partition, offset: Number(m.offset), timestamp: String(m.timestamp) }
  if (raw !== null && asText === undefined) meta.encoding = 'base64'
  const reason = e instanceof Error ? e.message : String(e)
  return {
    id: `${p.idPrefix}${String(m.offset)}`,
    source: p.source,
    key: p.key,
    time: nowIso(),
    body: raw === null ? null : (asText ?? raw.toString('base64')),
    meta,
    rejected: {
      code: 'SLUICE_ERR_CONNECTOR_KAFKA_RECORD',
      message: `the Kafka record at offset ${String(m.offset)} could not be turned into an event: ${reason}`,
      retriable: false,
    },
  }
}
