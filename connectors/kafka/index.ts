import { SluiceError, type ConnectorDefinition, type OptionIssue } from '../../src/sdk/index.js'
import { KafkaConnector } from './kafka-connector.js'
import {
  kafkaConnectionSchema,
  kafkaOutputSchema,
  kafkaTriggerSchema,
  type KafkaConnectionOptions,
  type KafkaOutputOptions,
  type KafkaTriggerOptions,
} from './options.js'
import { KafkaOutput } from './output.js'

export { KafkaConnector } from './kafka-connector.js'
export { KafkaOutput } from './output.js'
export { PartitionOffsets } from './offsets.js'
export { decodeValue, partitionInfo, toEvent, type PartitionInfo } from './message.js'
export {
  defaultGroupId,
  kafkaConnectionSchema,
  kafkaOutputSchema,
  kafkaTriggerSchema,
  triggerTopics,
  type KafkaConnectionOptions,
  type KafkaOutputOptions,
  type KafkaTriggerOptions,
} from './options.js'

function validateTrigger(t: KafkaTriggerOptions): OptionIssue[] {
  const issues: OptionIssue[] = []
  if (t.topic === undefined && t.topics === undefined)
    issues.push({ code: 'SLUICE_ERR_CONFIG_REQUIRED', path: ['topic'], message: 'needs topic: (or topics: [...])' })
  if (t.topic !== undefined && t.topics !== undefined)
    issues.push({ code: 'SLUICE_ERR_CONFIG_TYPE', path: ['topics'], message: 'set topic: or topics:, not both' })
  if (t.heartbeatIntervalMs >= t.sessionTimeoutMs) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_TYPE',
      path: ['heartbeatIntervalMs'],
      message: `must be below sessionTimeoutMs (${t.sessionTimeoutMs}); a third of it or less is usual`,
    })
  }
  return issues
}

export const kafkaConnector: ConnectorDefinition<KafkaTriggerOptions, KafkaConnectionOptions, KafkaOutputOptions> = {
  kind: 'kafka',
  connectionSchema: kafkaConnectionSchema,
  triggerSchema: kafkaTriggerSchema,
  outputSchema: kafkaOutputSchema,
  validateTrigger,
  createTrigger: (spec) => new KafkaConnector(spec),
  createOutput: (spec) => {
    const { connection, connectionName } = spec
    if (!connection || !connectionName)
      throw new SluiceError('SLUICE_ERR_CONFIG_CONNECTION', `output ${spec.outputName} of function ${spec.functionName} has no kafka connection`)
    return new KafkaOutput({ ...spec, connection, connectionName })
  },
}
