import type { ConnectorDefinition } from '../sdk/index.js'
import { amqpConnector } from '../../connectors/amqp/index.js'
import { eventHubsConnector } from '../../connectors/eventhubs/index.js'
import { httpConnector } from '../../connectors/http/index.js'
import { kafkaConnector } from '../../connectors/kafka/index.js'
import { mqttConnector } from '../../connectors/mqtt/index.js'
import { timerConnector } from '../../connectors/timer/index.js'

/** Every connector built into sluice. Config validation and the gateway both read this list. */
export const CONNECTORS: readonly ConnectorDefinition[] = [
  httpConnector,
  timerConnector,
  mqttConnector,
  amqpConnector,
  kafkaConnector,
  eventHubsConnector,
] as readonly ConnectorDefinition[]
