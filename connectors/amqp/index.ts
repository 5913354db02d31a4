import type { ConnectorDefinition } from '../../src/sdk/index.js'
import { AmqpConnector } from './amqp-connector.js'
import {
  amqpConnectionSchema,
  amqpOutputSchema,
  amqpTriggerSchema,
  type AmqpConnectionOptions,
  type AmqpOutputOptions,
  type AmqpTriggerOptions,
} from './options.js'
import { AmqpOutput } from './output.js'
import { validateTopology } from './topology.js'

export { AmqpConnector } from './amqp-connector.js'
export { AmqpOutput } from './output.js'
export { AckWindow, type AckFrame } from './acks.js'
export {
  amqpConnectionSchema,
  amqpOutputSchema,
  amqpTriggerSchema,
  type AmqpConnectionOptions,
  type AmqpOutputOptions,
  type AmqpTriggerOptions,
} from './options.js'

export const amqpConnector: ConnectorDefinition<AmqpTriggerOptions, AmqpConnectionOptions, AmqpOutputOptions> = {
  kind: 'amqp',
  connectionSchema: amqpConnectionSchema,
  triggerSchema: amqpTriggerSchema,
  outputSchema: amqpOutputSchema,
  validateTrigger: validateTopology,
  createTrigger: (spec) => new AmqpConnector(spec),
  createOutput: (spec) => new AmqpOutput(spec),
}
