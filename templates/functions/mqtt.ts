import type { BatchResult, Handler, MqttEvent } from 'sluice/function'

/** What the devices publish as JSON: change it to your payload. */
interface Reading {
  device?: string
  value?: number
}

/**
 * {{name}}: MQTT messages in batches. Messages of one topic arrive in order; different topics
 * run in parallel. A message that is not JSON arrives as a string.
 */
const handler: Handler<MqttEvent<Reading | string>, BatchResult> = async (events, ctx) => {
  for (const e of events) {
    ctx.log(`{{name}} got a message on ${e.meta.topic} (qos ${e.meta.qos})`, e.body)
  }
  // Return { failed: [id or { id, reason }] } to retry only those events; throw to retry them all.
  return {}
}

export default handler
