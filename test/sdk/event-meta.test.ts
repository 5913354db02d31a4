/**
 * The function types promise what the connectors send. Each table below lists every field of a
 * meta type (tsc refuses a table that misses or adds one: `Record<keyof ...>`), and the tests run
 * the connectors' own event builders on messages with every attribute set and check each meta
 * field they produce against the table: declared, and of the declared JSON type.
 */
import type { ReceivedEventData } from '@azure/event-hubs'
import type { Message } from 'amqplib'
import type { KafkaMessage } from 'kafkajs'
import type { IPublishPacket } from 'mqtt'
import { describe, expect, expectTypeOf, it } from 'vitest'
import { toEvent as amqpEvent } from '../../connectors/amqp/message.js'
import { toTriggerEvent as eventHubsEvent } from '../../connectors/eventhubs/events.js'
import { partitionInfo, toEvent as kafkaEvent } from '../../connectors/kafka/message.js'
import { toEvent as mqttEvent } from '../../connectors/mqtt/message.js'
import type { TimerBody } from '../../connectors/timer/timer-connector.js'
import type { AmqpMeta, EventHubsMeta, KafkaMeta, MqttMeta, TimerEvent } from '../../src/sdk/function.js'

/** JSON types of a field; `?` first: optional. */
type Spec<T> = Record<keyof T, string>

const MQTT: Spec<MqttMeta> = {
  topic: 'string',
  qos: 'number',
  retain: 'boolean',
  dup: 'boolean',
  packetId: 'number|null',
  encoding: '?string',
  bodyTruncated: '?boolean',
  bodyBytes: '?number',
  userProperties: '?object',
  contentType: '?string',
  responseTopic: '?string',
  correlationData: '?string',
  correlationDataEncoding: '?string',
  payloadFormatIndicator: '?number',
  messageExpiryInterval: '?number',
}

const AMQP: Spec<AmqpMeta> = {
  queue: 'string',
  exchange: 'string',
  routingKey: 'string',
  redelivered: 'boolean',
  deliveryTag: 'number',
  deliveryCount: 'number',
  headers: 'object',
  encoding: '?string',
  bodyTruncated: '?boolean',
  bodyBytes: '?number',
  messageId: '?string',
  correlationId: '?string',
  contentType: '?string',
  contentEncoding: '?string',
  replyTo: '?string',
  type: '?string',
  appId: '?string',
  priority: '?number',
}

const KAFKA: Spec<KafkaMeta> = {
  topic: 'string',
  partition: 'number',
  offset: 'number',
  timestamp: 'number|string',
  key: 'string|null',
  headers: 'object',
  encoding: '?string',
}

const EVENT_HUBS: Spec<EventHubsMeta> = {
  eventHub: 'string',
  consumerGroup: 'string',
  partitionId: 'string',
  offset: 'string',
  sequenceNumber: 'number',
  enqueuedTimeUtc: 'string',
  partitionKey: '?string',
  properties: '?object',
  contentType: '?string',
  messageId: '?string|number',
  correlationId: '?string|number',
  bodyEncoding: '?string',
  bodyTruncated: '?boolean',
  bodyBytes: '?number',
}

const jsonType = (v: unknown) => (v === null ? 'null' : typeof v)

/** Every produced field is declared with its type, every required field is there; returns the fields checked. */
function conforms(meta: Record<string, unknown>, spec: Record<string, string>): string[] {
  for (const [k, v] of Object.entries(meta)) {
    expect(Object.hasOwn(spec, k), `meta.${k} is not in the type`).toBe(true)
    expect(spec[k]?.replace('?', '').split('|'), `meta.${k}`).toContain(jsonType(v))
  }
  for (const [k, t] of Object.entries(spec)) if (!t.startsWith('?')) expect(meta, `required meta.${k}`).toHaveProperty(k)
  return Object.keys(meta).sort()
}

describe('event meta matches the function types', () => {
  it('MQTT, with every MQTT 5 property', () => {
    const packet = {
      cmd: 'publish',
      topic: 'stations/7/telemetry',
      payload: Buffer.from([0xff, 0xfe]),
      qos: 1,
      retain: true,
      dup: true,
      messageId: 42,
      properties: {
        userProperties: { a: 'b', c: ['d', 'e'] },
        contentType: 'application/octet-stream',
        responseTopic: 'replies/7',
        correlationData: Buffer.from([0xff]),
        payloadFormatIndicator: false,
        messageExpiryInterval: 60,
      },
    } as unknown as IPublishPacket
    const e = mqttEvent(packet, 'id-1', 'devices')
    expect(conforms(e.meta, MQTT)).toEqual(
      Object.keys(MQTT)
        .filter((k) => !k.startsWith('body'))
        .sort(),
    )
  })

  it('AMQP, with every message property', () => {
    const msg = {
      content: Buffer.from([0xff, 0x00]),
      fields: { exchange: 'orders', routingKey: 'orders.created', redelivered: true, deliveryTag: 9, consumerTag: 'c' },
      properties: {
        headers: { 'x-n': 1, 'x-b': Buffer.from('t') },
        messageId: 'm1',
        correlationId: 'c1',
        contentType: 'application/octet-stream',
        contentEncoding: 'identity',
        replyTo: 'q',
        type: 'created',
        appId: 'shop',
        priority: 3,
        timestamp: 1700000000,
      },
    } as unknown as Message
    const e = amqpEvent(msg, { id: 'm1', source: 'amqp://queue/orders', queue: 'orders', attempt: 1, deliveries: 2 })
    expect(conforms(e.meta, AMQP)).toEqual(
      Object.keys(AMQP)
        .filter((k) => !k.startsWith('body'))
        .sort(),
    )
  })

  it('Kafka, with a key, headers and a value that is not UTF-8', () => {
    const m = {
      key: Buffer.from('st-1'),
      value: Buffer.from([0xff]),
      timestamp: '1700000000000',
      offset: '17',
      attributes: 0,
      headers: { trace: Buffer.from('t1'), multi: [Buffer.from('a'), 'b'] },
    } as unknown as KafkaMessage
    const e = kafkaEvent(m, partitionInfo('telemetry', 3, 'stream', false))
    expect(conforms(e.meta, KAFKA)).toEqual(Object.keys(KAFKA).sort())
    expect(e.meta).toMatchObject({ partition: 3, offset: 17, key: 'st-1', headers: { trace: 't1', multi: ['a', 'b'] } })
  })

  it('Event Hubs, with every event attribute', () => {
    const data = {
      body: new Uint8Array([0xff]),
      enqueuedTimeUtc: new Date('2026-01-01T00:00:00Z'),
      offset: '4096',
      sequenceNumber: 12,
      partitionKey: 'st-1',
      properties: { station: 'st-1', at: new Date(0) },
      contentType: 'application/octet-stream',
      messageId: 'm1',
      correlationId: 7,
      systemProperties: {},
      getRawAmqpMessage: () => ({ bodyType: 'data' }),
    } as unknown as ReceivedEventData
    const e = eventHubsEvent(data, { connection: 'hub', eventHub: 'telemetry', consumerGroup: '$Default', partitionId: '0' })
    expect(conforms(e.meta, EVENT_HUBS)).toEqual(
      Object.keys(EVENT_HUBS)
        .filter((k) => !k.startsWith('bodyT') && k !== 'bodyBytes')
        .sort(),
    )
  })

  it('timer: the tick body is the connector type', () => {
    expectTypeOf<TimerEvent['body']>().toEqualTypeOf<TimerBody>()
  })
})
