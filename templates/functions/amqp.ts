import type { AmqpEvent, BatchResult, Handler } from 'sluice/function'

/** What producers publish as JSON: change it to your message. */
interface Message {
  id?: string
}

/**
 * {{name}}: messages from a RabbitMQ queue in batches, in queue order. A message is acknowledged
 * once the function finished it (or it was dead-lettered after its retries).
 */
const handler: Handler<AmqpEvent<Message | string>, BatchResult> = async (events, ctx) => {
  for (const e of events) {
    ctx.log(`{{name}} got a message from ${e.meta.exchange || '(default exchange)'} with routing key ${e.meta.routingKey}`, e.body)
  }
  // Return { failed: [id or { id, reason }] } to retry only those events; throw to retry them all.
  return {}
}

export default handler
