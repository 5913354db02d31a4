import { isUtf8 } from 'node:buffer'
import type { IPublishPacket } from 'mqtt'
import { decodePayload, nowIso, type TriggerEvent } from '../../src/sdk/index.js'

/** UTF-8 text of `b`, or undefined when it is not valid UTF-8. */
function text(b: Buffer): string | undefined {
  return isUtf8(b) ? b.toString('utf8') : undefined
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
  // Parsed JSON, else UTF-8 text, else base64; a payload past the event limits is `rejected` (the
  // router dead-letters it with its raw text and the PUBACK follows once the letter is durable).
  // JSON-looking text goes on unparsed (rawBody): the router checks it, the isolate parses it.
  const { body, base64, rejected, truncatedFrom, raw } = decodePayload(payload, { raw: true })
  const meta: Record<string, unknown> = {
    topic,
    qos: packet.qos,
    retain: packet.retain,
    dup: packet.dup,
    packetId: packet.messageId ?? null,
  }
  if (base64) meta.encoding = 'base64'
  if (truncatedFrom !== undefined) {
    meta.bodyTruncated = true
    meta.bodyBytes = truncatedFrom
  }
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
  const event: TriggerEvent = { id, source: `mqtt://${connection}/${topic}`, key: topic, time: nowIso(), body, meta }
  if (raw !== undefined) event.rawBody = raw
  if (rejected) event.rejected = rejected
  return event
}
