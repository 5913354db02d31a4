import { SluiceError, type ConnectorDefinition, type OptionIssue } from '../../src/sdk/index.js'
import { EventHubsConnector, LOAD_BALANCING_DEFAULTS } from './eventhubs-connector.js'
import {
  eventHubsConnectionSchema,
  eventHubsOutputSchema,
  eventHubsTriggerSchema,
  type EventHubsConnectionOptions,
  type EventHubsOutputOptions,
  type EventHubsTriggerOptions,
} from './options.js'
import { EventHubsOutput } from './output.js'

export { EventHubsConnector, startPositionOf } from './eventhubs-connector.js'
export { SluiceCheckpointStore, type PartitionRow } from './checkpoint-store.js'
export { EventHubsOutput } from './output.js'
export { toTriggerEvent } from './events.js'
export {
  eventHubsConnectionSchema,
  eventHubsOutputSchema,
  eventHubsTriggerSchema,
  type EventHubsConnectionOptions,
  type EventHubsOutputOptions,
  type EventHubsTriggerOptions,
} from './options.js'

function validateTrigger(t: EventHubsTriggerOptions): OptionIssue[] {
  const issues: OptionIssue[] = []
  const start = t.startPosition
  if (typeof start === 'object' && 'enqueuedOn' in start && Number.isNaN(Date.parse(start.enqueuedOn))) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_TYPE',
      path: ['startPosition', 'enqueuedOn'],
      message: `${JSON.stringify(start.enqueuedOn)} is not a date and time (ISO 8601, e.g. 2026-11-27T00:00:00Z)`,
    })
  }
  const lb = { ...LOAD_BALANCING_DEFAULTS, ...t.loadBalancing }
  if (lb.ownershipExpirationMs <= lb.updateIntervalMs) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_TYPE',
      path: ['loadBalancing', 'ownershipExpirationMs'],
      message: `must be longer than updateIntervalMs (${lb.updateIntervalMs}): owners renew their partitions every updateIntervalMs, and others take them over after ownershipExpirationMs`,
    })
  }
  return issues
}

export const eventHubsConnector: ConnectorDefinition<EventHubsTriggerOptions, EventHubsConnectionOptions, EventHubsOutputOptions> = {
  kind: 'eventhubs',
  connectionSchema: eventHubsConnectionSchema,
  triggerSchema: eventHubsTriggerSchema,
  outputSchema: eventHubsOutputSchema,
  validateTrigger,
  createTrigger: (spec) => new EventHubsConnector(spec),
  createOutput: (spec) => {
    const { connection, connectionName } = spec
    if (!connection || !connectionName)
      throw new SluiceError('SLUICE_ERR_CONFIG_CONNECTION', `output ${spec.outputName} of function ${spec.functionName} has no eventhubs connection`)
    return new EventHubsOutput({ ...spec, connection, connectionName })
  },
}
