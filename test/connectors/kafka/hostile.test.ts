/**
 * Hostile payloads through the Kafka trigger on a real Kafka 4 broker: deeply nested JSON,
 * invalid UTF-8, empty, huge (over the event limit), binary, `__proto__`, big numbers and lone
 * surrogates. The gateway stays up, each record ends processed or dead-lettered exactly once,
 * the commit moves past all of them, and a normal message after them still flows.
 */
import { describe, expect, it } from 'vitest'
import { startGateway, waitFor } from '../../helpers/gateway.js'
import type { KafkaBroker } from '../../helpers/kafka-broker.js'
import { brokerPerFile, connectionYaml, FAST_GROUP, producerFor, uid } from './helpers.js'

let broker: KafkaBroker
const cleanups = brokerPerFile((b) => {
  broker = b
})

const HUGE = 7 * 1024 * 1024

const PAYLOADS: Array<{ name: string; value: Buffer | null }> = [
  { name: 'deep JSON', value: Buffer.from('['.repeat(5000) + ']'.repeat(5000)) },
  { name: 'invalid UTF-8', value: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0xc3, 0x28, 0x7d]) },
  { name: 'empty', value: Buffer.alloc(0) },
  { name: 'huge', value: Buffer.alloc(HUGE, 0x61) },
  { name: 'binary', value: Buffer.from([0, 1, 2, 255, 254, 0, 13, 10]) },
  { name: '__proto__', value: Buffer.from('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}') },
  { name: 'big numbers', value: Buffer.from('{"n":123456789012345678901234567890,"f":1e400,"neg":-1e-400}') },
  { name: 'lone surrogates (JSON escape)', value: Buffer.from('{"s":"\\ud800 and \\udfff"}') },
  { name: 'lone surrogate (raw bytes)', value: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]) },
  { name: 'tombstone', value: null },
]

describe('kafka hostile payloads', () => {
  it('keeps the gateway up and ends each record processed or dead-lettered exactly once, committing past all', async () => {
    const topic = uid('hostile')
    const group = `g-${topic}`
    await broker.createTopic(topic, 1, { 'max.message.bytes': String(16 * 1024 * 1024), 'segment.bytes': String(32 * 1024 * 1024) })
    const t = await startGateway({
      yaml: `connections:\n${connectionYaml('stream', broker)}\nfunctions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, ${FAST_GROUP}, maxBytesPerPartition: 1048576 } }\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 20 }\n`,
      files: {
        'functions/f.js': `export default async function (events, ctx) { for (const e of events) ctx.log.info('ev ' + e.id + ' ' + (({}).polluted === true)) }`,
      },
    })
    cleanups.push(() => t.stop())
    const p = await producerFor(broker)
    cleanups.push(() => p.disconnect())
    for (const { value } of PAYLOADS) await p.send({ topic, acks: -1, messages: [{ value }] })
    await p.send({ topic, acks: -1, messages: [{ value: '{"n":"after"}' }] })
    const total = PAYLOADS.length + 1
    await waitFor(async () => (await broker.committed(group, topic))[0] === total, 60_000, 'the commit past every record')
    const processed = t.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('ev ')).map((l) => String(l.msg).split(' ')[1] as string)
    const dead = (await t.gw.listDeadLetters({})).map((d) => d.event.id)
    const ids = Array.from({ length: total }, (_, o) => `${topic}-0-${o}`)
    // Exactly once each: processed or dead-lettered, never both, never twice.
    expect([...processed, ...dead].sort()).toEqual([...ids].sort())
    expect(dead).toEqual(expect.arrayContaining([`${topic}-0-0`, `${topic}-0-3`]))
    expect(processed).toContain(`${topic}-0-${total - 1}`)
    // No prototype was polluted in the function's isolate.
    expect(t.logs.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('ev ') && l.msg.endsWith(' true'))).toBe(false)
    expect(t.gw.health().connections.every((c) => c.up)).toBe(true)
  }, 180_000)
})
