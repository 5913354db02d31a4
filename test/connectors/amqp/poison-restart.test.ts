/**
 * The crash-loop regression on RabbitMQ (see ../poison-restart.ts): the poison waits in a durable
 * queue while the gateway is killed; the restarted gateway stays up, dead-letters it once and
 * acks it (the queue ends empty, and a later start does not get it again).
 */
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { cleanupStack } from '../mqtt/ledger.js'
import { DEEP_ARRAY, expectSurvivesPoison, poisonProject } from '../poison-restart.js'
import { Client, RABBIT_URL } from './broker.js'
import { settled, tempQueue } from './helpers.js'

describe('amqp: a poison message queued across a kill -9', () => {
  it('does not put the gateway into a crash loop', { timeout: 300_000 }, async () => {
    const cleanup = cleanupStack()
    const queue = await tempQueue('amqp-poison-restart')
    const c = await Client.open()
    cleanup(() => c.close())
    const gp = poisonProject(
      `  q: { kind: amqp, url: "${RABBIT_URL}", reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }`,
      `{ amqp: { connection: q, queue: ${queue} } }`,
      cleanup,
    )
    await gp.start()
    await gp.kill()
    c.ch.sendToQueue(queue, Buffer.from(DEEP_ARRAY), { persistent: true, contentType: 'application/json' })
    c.ch.sendToQueue(queue, Buffer.from('{"n":1}'), { persistent: true, contentType: 'application/json' })
    await c.ch.waitForConfirms()
    await expectSurvivesPoison(gp, () => c.publish([{ marker: true }], { queue }))
    expect(await waitFor(() => settled(queue), 20_000, 'the queue empty and nothing unacked')).toBe(true)
  })
})
