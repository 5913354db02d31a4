import { isUtf8 } from 'node:buffer'
import type { IPublishPacket } from 'mqtt'
import type { TriggerEvent } from '../../src/sdk/index.js'

/** UTF-8 text of `b`, or undefined when it is not valid UTF-8. */
function text(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined
}

let lastMs = 0
let lastIso = ''
/** Now as ISO 8601, formatted once per millisecond (a backlog arrives many messages a millisecond). */
function nowIso(): string {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

/** A payload as a function sees it: parsed JSON, else the UTF-8 string, else base64 (meta.encoding says so). */
export function decodePayload(payload: Buffer): { body: unknown; base64: boolean } {
  const s = text(payload)
  if (s === undefined) return { body: payload.toString('base64'), base64: true }
  // JSON.parse throws on most non-JSON text; skip the attempt when the first character rules JSON out.
  const c = s.trimStart().charCodeAt(0)
  const maybeJson = c === 123 || c === 91 || c === 34 || c === 45 || (c >= 48 && c <= 57) || c === 116 || c === 102 || c === 110
  if (maybeJson) {
    try {
      return { body: JSON.parse(s) as unknown, base64: false }
    } catch {
      // not JSON: the string itself
    }
  }
  return { body: s, base64: false }
}

/** Text of a binary MQTT 5 property (correlation data): UTF-8 when it is, else base64. */
function binaryProperty(b: Buffer | undefined): { value: string; base64: boolean } | undefined {
  if (!b) return undefined
  const s = text(b)
  return s === undefined ? { value: b.toString('base64'), base64: true } : { value: s, base64: false }
}

export function payloadOf(packet: IPublishPacket): Buffer {
  return Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
}

/**
 * The event of one PUBLISH: `source` mqtt://<connection>/<topic>, `key` the topic (per-topic
 * order), `meta` the MQTT attributes (and the MQTT 5 properties that are present).
 */
export function toEvent(packet: IPublishPacket, id: string, connection: string): TriggerEvent {
  const topic = packet.topic
  const payload = payloadOf(packet)
  const { body, base64 } = decodePayload(payload)
  const meta: Record<string, unknown> = {
    topic,
    qos: packet.qos,
    retain: packet.retain,
    dup: packet.dup,
    packetId: packet.messageId ?? null,
  }
  if (base64) meta.encoding = 'base64'
  const p = packet.properties
  if (p) {
    if (p.userProperties) meta.userProperties = p.userProperties
    if (p.contentType !== undefined) meta.contentType = p.contentType
    if (p.responseTopic !== undefined) meta.responseTopic = p.responseTopic
    const corr = binaryProperty(p.correlationData)
    if (corr) {
      meta.correlationData = corr.value
      if (corr.base64) meta.correlationDataEncoding = 'base64'
    }
    if (p.payloadFormatIndicator !== undefined) meta.payloadFormatIndicator = p.payloadFormatIndicator ? 1 : 0
    if (p.messageExpiryInterval !== undefined) meta.messageExpiryInterval = p.messageExpiryInterval
  }
  return { id, source: `mqtt://${connection}/${topic}`, key: topic, time: nowIso(), body, meta }
}
