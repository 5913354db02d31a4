import type { Channel } from 'amqplib'
import { SluiceError, type OptionIssue } from '../../src/sdk/index.js'
import { describe, replyCode } from './connection.js'
import type { AmqpTriggerOptions } from './options.js'

/**
 * Declares what the trigger configures, in dependency order: the exchange, the queue, the
 * bindings; without `declare`, checks that the queue exists. Also checks that the
 * deadLetterExchange exists, so a missing one fails at start instead of at the first poison
 * message. Runs at start and after every reconnect (a broker restart drops non-durable queues
 * and their bindings). A failed declaration closes the channel (amqplib rejects with the reply
 * code: 404 NOT_FOUND, 406 PRECONDITION_FAILED for a queue that exists with other settings).
 * A queue that does not exist (and is not declared) rejects with SLUICE_ERR_CONNECTOR_TOPOLOGY
 * naming the queue, the connection and the fix (`declare:`).
 */
export async function declareTopology(ch: Channel, t: AmqpTriggerOptions, connection = '(unnamed)'): Promise<{ messageCount: number }> {
  if (t.exchange) {
    await ch.assertExchange(t.exchange.name, t.exchange.type, { durable: t.exchange.durable, autoDelete: t.exchange.autoDelete })
  }
  let messageCount: number
  if (t.declare) {
    const args: Record<string, unknown> = { ...t.declare.arguments }
    if (t.declare.type === 'quorum') args['x-queue-type'] = 'quorum'
    const ok = await ch.assertQueue(t.queue, { durable: t.declare.durable, autoDelete: t.declare.autoDelete, arguments: args })
    messageCount = ok.messageCount
  } else {
    try {
      messageCount = (await ch.checkQueue(t.queue)).messageCount
    } catch (e) {
      if (replyCode(e) !== 404) throw e
      throw new SluiceError(
        'SLUICE_ERR_CONNECTOR_TOPOLOGY',
        `queue ${JSON.stringify(t.queue)} does not exist on connection ${connection} (404 NOT_FOUND): create it at the broker, or add declare: {} to the trigger (declare: { type: quorum } for a quorum queue) so sluice declares it at start`,
        { cause: e, context: { connection, queue: t.queue, detail: describe(e) }, retriable: false },
      )
    }
  }
  for (const b of t.bindings ?? []) {
    const exchange = b.exchange ?? t.exchange?.name
    if (exchange) await ch.bindQueue(t.queue, exchange, b.routingKey ?? '', b.arguments ?? {})
  }
  if (t.deadLetterExchange) await ch.checkExchange(t.deadLetterExchange)
  return { messageCount }
}

/** Checks the schema cannot express. */
export function validateTopology(t: AmqpTriggerOptions): OptionIssue[] {
  const issues: OptionIssue[] = []
  const bad = (path: Array<string | number>, message: string) => issues.push({ code: 'SLUICE_ERR_CONFIG_TYPE', path, message })
  if (t.declare?.type === 'quorum') {
    if (!t.declare.durable) bad(['declare', 'durable'], 'must be true for a quorum queue')
    if (t.declare.autoDelete) bad(['declare', 'autoDelete'], 'must be false for a quorum queue')
  }
  if (t.queue.startsWith('amq.')) bad(['queue'], 'names starting with amq. are reserved by the broker')
  ;(t.bindings ?? []).forEach((b, i) => {
    if (b.exchange === undefined && t.exchange === undefined)
      issues.push({ code: 'SLUICE_ERR_CONFIG_REQUIRED', path: ['bindings', i, 'exchange'], message: 'is required when no exchange: is declared' })
  })
  if (t.deadLetterRoutingKey !== undefined && t.deadLetterExchange === undefined) bad(['deadLetterRoutingKey'], 'needs deadLetterExchange')
  return issues
}
