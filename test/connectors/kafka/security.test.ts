/**
 * The connection's security options against a real Kafka 4 broker with SASL_PLAINTEXT (PLAIN,
 * SCRAM-SHA-256, SCRAM-SHA-512), SSL with client certificates required, and SASL_SSL listeners;
 * the CA, the broker's keystore and a client certificate are made by the test (certs.ts). Each
 * case starts a gateway whose trigger connects through one listener and checks that a message
 * arrives. A wrong password fails the start at once with SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED,
 * and the broker's log shows a handful of authentication attempts, not a retry storm.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, waitFor } from '../../helpers/gateway.js'
import { KafkaBroker } from '../../helpers/kafka-broker.js'
import { makeCerts, type TestCerts } from './certs.js'
import { FAST_GROUP, produce, producerFor, uid } from './helpers.js'

const USERS = { alice: 'alice-secret' }

let broker: KafkaBroker
let certs: TestCerts
let producer: Producer
const cleanups: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  certs = makeCerts()
  broker = await KafkaBroker.start({ sasl: USERS, tls: { keystore: certs.keystore, password: certs.keystorePassword, caPem: certs.caFile } })
  producer = await producerFor(broker)
}, 180_000)
afterAll(async () => {
  await producer?.disconnect()
  await broker?.close()
  certs?.cleanup()
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const ENV = { CA: '', CERT: '', KEY: '', KEY_PASS: '', PASSWORD: '' }

/** Starts a gateway whose kafka connection is `conn` (flow YAML keys), and checks one message arrives. */
async function consumesThrough(conn: string, env: Record<string, string>): Promise<void> {
  const topic = uid('sec')
  await broker.createTopic(topic, 1)
  const t = await startGateway({
    yaml: `connections:\n  stream: { kind: kafka, connectionTimeoutMs: 3000, ${conn} }\nfunctions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, ${FAST_GROUP} } }\n`,
    files: { 'functions/f.js': `export default async function (events, ctx) { for (const e of events) ctx.log.info('got ' + e.body.n) }` },
    env: { ...ENV, ...env },
  })
  cleanups.push(() => t.stop())
  await produce(producer, topic, [{ n: 42 }])
  expect(
    t.gw.health().connections.every((c) => c.up),
    JSON.stringify(t.gw.health().connections),
  ).toBe(true)
  await waitFor(() => t.logs.find(/^got 42$/).length === 1, 30_000, 'the message through the secured listener')
}

describe('kafka security', () => {
  it('SASL/PLAIN', async () => {
    await consumesThrough(`brokers: ["${broker.listeners.sasl}"], sasl: { mechanism: plain, username: alice, password: "\${PASSWORD}" }`, {
      PASSWORD: USERS.alice,
    })
  })

  it('SASL/SCRAM-SHA-512', async () => {
    await consumesThrough(`brokers: ["${broker.listeners.sasl}"], sasl: { mechanism: scram-sha-512, username: alice, password: "\${PASSWORD}" }`, {
      PASSWORD: USERS.alice,
    })
  })

  it('TLS with a client certificate (ca, cert, key with passphrase, servername)', async () => {
    await consumesThrough(
      `brokers: ["${broker.listeners.ssl}"], ssl: { ca: "\${CA}", cert: "\${CERT}", key: "\${KEY}", passphrase: "\${KEY_PASS}", servername: localhost }`,
      {
        CA: certs.caPem,
        CERT: certs.clientCert,
        KEY: certs.clientKey,
        KEY_PASS: certs.clientKeyPassphrase,
      },
    )
  })

  it('SASL/SCRAM-SHA-256 over TLS (ssl: { ca })', async () => {
    await consumesThrough(
      `brokers: ["${broker.listeners.saslSsl}"], ssl: { ca: "\${CA}" }, sasl: { mechanism: scram-sha-256, username: alice, password: "\${PASSWORD}" }`,
      { CA: certs.caPem, PASSWORD: USERS.alice },
    )
  })

  it('fails the start at once with SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED on a wrong password, without a retry storm', async () => {
    const failures = () =>
      broker
        .log()
        .split('\n')
        .filter((l) => l.includes('Failed authentication')).length
    const before = failures()
    for (const mechanism of ['plain', 'scram-sha-512']) {
      const err = await startGateway({
        yaml: `connections:\n  stream: { kind: kafka, brokers: ["${broker.listeners.sasl}"], connectionTimeoutMs: 3000, sasl: { mechanism: ${mechanism}, username: alice, password: wrong } }\nfunctions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: anything } }\n`,
        files: { 'functions/f.js': 'export default async function () {}' },
      }).then(
        async (t) => {
          await t.stop()
          return undefined
        },
        (e: unknown) => e as { code?: string; message?: string },
      )
      expect(err?.code, mechanism).toBe('SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED')
      expect(err?.message).toMatch(/authentication failed/i)
    }
    const afterStart = await waitFor(() => failures() > before && failures(), 10_000, 'the failed attempts in the broker log')
    // One failed handshake per client and mechanism (the trigger's admin client), not a retry
    // loop: nothing more arrives once the start failed.
    expect(afterStart - before).toBeLessThanOrEqual(6)
    const settled = Date.now() + 3000
    await waitFor(() => Date.now() > settled, 10_000, 'three more seconds')
    expect(failures()).toBe(afterStart)
  })
})
