import { isUtf8 } from 'node:buffer'
import type { KafkaMessage } from 'kafkajs'
import { decodePayload, nowIso, type ErrorInfo, type TriggerEvent } from '../../src/sdk/index.js'

/** UTF-8 text of `b`, or undefined when it is not valid UTF-8. */
function text(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined
}

// The messages of one producer batch mostly share a timestamp (milliseconds): its ISO text is
// formatted once, not once per message.
let lastTs = ''
let lastIso = ''
/** The ISO time of a valid timestamp `ts` whose text is `raw`. */
function isoOf(raw: string, ts: number): string {
  if (raw !== lastTs) {
    lastIso = new Date(ts).toISOString()
    lastTs = raw
  }
  return lastIso
}

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

/** The largest time a JavaScript Date holds (ms since the epoch). */
const MAX_DATE_MS = 8.64e15

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
 * the offset moves on (so does a raw body nested too deep: the router refuses it).
 */
export function toEvent(m: KafkaMessage, p: PartitionInfo): TriggerEvent {
  try {
    return build(m, p)
  } catch (e) {
    return unbuildable(m, p, e)
  }
}

function build(m: KafkaMessage, p: PartitionInfo): TriggerEvent {
  // JSON-looking text goes on unparsed (rawBody): the router checks it, the isolate parses it.
  const d = m.value === null ? undefined : decodePayload(m.value, { raw: true })
  const key = m.key === null ? null : (text(m.key) ?? m.key.toString('base64'))
  const ts = Number(m.timestamp)
  const validTime = Number.isFinite(ts) && ts > 0 && ts <= MAX_DATE_MS
  const headers: Record<string, string | string[] | null> = {}
  if (m.headers) for (const k in m.headers) headers[k] = headerText(m.headers[k])
  const meta: Record<string, unknown> = {
    topic: p.topic,
    partition: p.partition,
    offset: Number(m.offset),
    timestamp: validTime ? ts : String(m.timestamp),
    key,
    headers,
  }
  if (d?.base64) meta.encoding = 'base64'
  const event: TriggerEvent = {
    id: p.idPrefix + m.offset,
    source: p.source,
    key: p.byKey && key !== null ? `${p.key}/${key}` : p.key,
    time: validTime ? isoOf(m.timestamp, ts) : nowIso(),
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
