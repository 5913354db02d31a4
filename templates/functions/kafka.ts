import type { BatchResult, Handler, KafkaEvent } from 'sluice/function'

/** What producers write as JSON: change it to your record value. */
interface Value {
  id?: string
}

/**
 * {{name}}: Kafka records in batches, in order per partition. Offsets are committed once every
 * record up to them is finished.
 */
const handler: Handler<KafkaEvent<Value | string | null>, BatchResult> = async (events, ctx) => {
  for (const e of events) {
    ctx.log(`{{name}} got ${e.meta.topic}/${e.meta.partition}@${e.meta.offset} key ${e.meta.key ?? '(none)'}`, e.body)
  }
  // Return { failed: [id or { id, reason }] } to retry only those events; throw to retry them all.
  return {}
}

export default handler
