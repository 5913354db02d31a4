import type { BatchResult, EventHubsEvent, Handler } from 'sluice/function'

/** What producers send as JSON: change it to your event body. */
interface Telemetry {
  id?: string
}

/**
 * {{name}}: Azure Event Hubs events in batches, in order per partition. A partition is
 * checkpointed once every event up to the checkpoint is finished.
 */
const handler: Handler<EventHubsEvent<Telemetry | string>, BatchResult> = async (events, ctx) => {
  for (const e of events) {
    ctx.log(`{{name}} got partition ${e.meta.partitionId} #${e.meta.sequenceNumber}, enqueued ${e.meta.enqueuedTimeUtc}`, e.body)
  }
  // Return { failed: [id or { id, reason }] } to retry only those events; throw to retry them all.
  return {}
}

export default handler
