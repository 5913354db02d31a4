import { isUtf8 } from 'node:buffer'
import type { KafkaMessage } from 'kafkajs'
import type { TriggerEvent } from '../../src/sdk/index.js'

/** UTF-8 text of `b`, or undefined when it is not valid UTF-8. */
function text(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined
}

/** A value as a function sees it: parsed JSON, else the UTF-8 string, else base64; null for a tombstone. */
export function decodeValue(value: Buffer | null): { body: unknown; base64: boolean } {
  if (value === null) return { body: null, base64: false }
  const s = text(value)
  if (s === undefined) return { body: value.toString('base64'), base64: true }
  // JSON.parse throws on most non-JSON text; skip the attempt when the first character rules JSON out.
  const c = s.trimStart().charCodeAt(0)
  if (c === 123 || c === 91 || c === 34 || c === 45 || (c >= 48 && c <= 57) || c === 116 || c === 102 || c === 110) {
    try {
      return { body: JSON.parse(s) as unknown, base64: false }
    } catch {
      // not JSON: the string itself
    }
  }
  return { body: s, base64: false }
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
  /** orderBy: key: order per message key within the partition. */
  byKey: boolean
}

export function partitionInfo(topic: string, partition: number, connection: string, byKey: boolean): PartitionInfo {
  return { topic, partition, source: `kafka://${connection}/${topic}`, key: `${topic}/${partition}`, byKey }
}

/**
 * The event of one Kafka message: id `<topic>-<partition>-<offset>`, `source`
 * kafka://<connection>/<topic>, `key` `<topic>/<partition>` (per-partition order) or, with
 * orderBy: key, `<topic>/<partition>/<message key>` (per-key order within the partition).
 */
export function toEvent(m: KafkaMessage, p: PartitionInfo): TriggerEvent {
  const { body, base64 } = decodeValue(m.value)
  const key = m.key === null ? null : (text(m.key) ?? m.key.toString('base64'))
  const timestamp = Number(m.timestamp)
  const headers: Record<string, string | string[] | null> = {}
  if (m.headers) for (const k in m.headers) headers[k] = headerText(m.headers[k])
  const meta: Record<string, unknown> = { topic: p.topic, partition: p.partition, offset: Number(m.offset), timestamp, key, headers }
  if (base64) meta.encoding = 'base64'
  return {
    id: `${p.topic}-${p.partition}-${m.offset}`,
    source: p.source,
    key: p.byKey && key !== null ? `${p.key}/${key}` : p.key,
    time: new Date(timestamp > 0 ? timestamp : Date.now()).toISOString(),
    body,
    meta,
  }
}
