/**
 * The crash-loop regression on Mosquitto (see ../poison-restart.ts): a persistent session holds
 * the poison while the gateway is killed; the restarted gateway stays up, dead-letters it once
 * and PUBACKs it (a later start does not get it again).
 */
import { describe, it } from 'vitest'
import { cleanupStack } from './ledger.js'
import { dropSession, publish, SYSTEM_BROKER, uid } from './helpers.js'
import { DEEP_ARRAY, expectSurvivesPoison, poisonProject } from '../poison-restart.js'

describe('mqtt: a poison message queued across a kill -9', () => {
  it('does not put the gateway into a crash loop', { timeout: 300_000 }, async () => {
    const cleanup = cleanupStack()
    const clientId = uid('sluice-poison')
    const topic = `poison/${uid()}`
    cleanup(() => dropSession(SYSTEM_BROKER, clientId))
    const gp = poisonProject(
      `  bus: { kind: mqtt, url: "${SYSTEM_BROKER}", reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }`,
      `{ mqtt: { connection: bus, topic: "${topic}", qos: 1, clientId: ${clientId} } }`,
      cleanup,
    )
    // The first start creates the persistent session; the kill leaves it at the broker.
    await gp.start()
    await gp.kill()
    await publish(SYSTEM_BROKER, topic, [DEEP_ARRAY, { n: 1 }])
    await expectSurvivesPoison(gp, () => publish(SYSTEM_BROKER, topic, [{ marker: true }]))
  })
})
