import type { Message } from 'amqplib'
import type { Logger, Outcome } from '../../src/sdk/index.js'
import { describe } from './connection.js'
import type { Link } from './link.js'

/** Where a trigger's dead letters go, and what their headers name. */
export interface DeadLetterTarget {
  exchange: string
  /** Defaults to the message's own routing key. */
  routingKey: string | undefined
  functionName: string
  queue: string
}

/**
 * Publishes a dead-lettered message to the dead-letter exchange (original body and properties,
 * plus x-sluice-* headers) on the link's confirm channel, opened on first use, and waits for the
 * broker's confirm. The message is already in the dead-letter store, so this never rejects: a
 * failure is logged and the caller acks the message all the same.
 */
export async function publishDeadLetter(
  link: Link,
  msg: Message,
  outcome: Extract<Outcome, { status: 'dead' }>,
  target: DeadLetterTarget,
  log: Logger,
): Promise<void> {
  const exchange = target.exchange
  try {
    link.dlx ??= link.model.createConfirmChannel().then((ch) => {
      ch.on('error', (e: Error) => log.warn({ err: describe(e) }, 'amqp dead-letter channel error'))
      ch.on('close', () => {
        link.dlx = undefined
      })
      return ch
    })
    const ch = await link.dlx
    const p = msg.properties
    const headers = {
      ...(p.headers ?? {}),
      'x-sluice-dead-letter-id': outcome.deadLetterId,
      'x-sluice-error-code': outcome.error.code,
      'x-sluice-error': outcome.error.message.slice(0, 1000),
      'x-sluice-function': target.functionName,
      'x-sluice-queue': target.queue,
    }
    const options = {
      contentType: p.contentType,
      contentEncoding: p.contentEncoding,
      deliveryMode: p.deliveryMode,
      priority: p.priority,
      correlationId: p.correlationId,
      replyTo: p.replyTo,
      messageId: p.messageId,
      timestamp: p.timestamp,
      type: p.type,
      appId: p.appId,
    }
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined && v !== null))
    await new Promise<void>((resolve, reject) => {
      ch.publish(exchange, target.routingKey ?? msg.fields.routingKey, msg.content, { ...defined, headers }, (err: unknown) => (err ? reject(err) : resolve()))
    })
  } catch (e) {
    log.error(
      { exchange, deadLetterId: outcome.deadLetterId, err: describe(e) },
      'cannot publish to the dead-letter exchange; the message is in the dead-letter store',
    )
  }
}
