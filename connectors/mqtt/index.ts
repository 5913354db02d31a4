import { SluiceError, type ConnectorDefinition, type OptionIssue } from '../../src/sdk/index.js'
import { MqttConnector } from './mqtt-connector.js'
import {
  mqttConnectionSchema,
  mqttOutputSchema,
  mqttTriggerSchema,
  type MqttConnectionOptions,
  type MqttOutputOptions,
  type MqttTriggerOptions,
} from './options.js'
import { MqttOutput } from './output.js'
import { takeOverSession } from './takeover.js'

export { MqttConnector, defaultClientId, subscriptionFilter } from './mqtt-connector.js'
export { MqttOutput } from './output.js'
export { embeddedBrokerCount } from './embedded.js'
export {
  mqttConnectionSchema,
  mqttOutputSchema,
  mqttTriggerSchema,
  type MqttConnectionOptions,
  type MqttOutputOptions,
  type MqttTriggerOptions,
} from './options.js'

/** Why a topic filter is invalid (MQTT 3.1.1 §4.7 / MQTT 5 §4.7), or undefined when it is fine. */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.includes('\u0000')) return 'must not contain the null character'
  if (/^\$share\//i.test(filter)) return 'must not start with $share/: set share: <group> instead'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return '# must be a whole level and the last one, e.g. stations/#'
    if (level.includes('+') && level !== '+') return '+ must be a whole level, e.g. stations/+/telemetry'
  }
  return undefined
}

function validateTrigger(t: MqttTriggerOptions): OptionIssue[] {
  const issues: OptionIssue[] = []
  const problem = topicFilterProblem(t.topic)
  if (problem) issues.push({ code: 'SLUICE_ERR_CONFIG_TOPIC', path: ['topic'], message: `${JSON.stringify(t.topic)}: ${problem}` })
  if (t.qos === 2) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_QOS',
      path: ['qos'],
      message:
        'QoS 2 cannot be delivered at-least-once here: mqtt.js answers PUBREC as soon as the message arrives and keeps it only in memory until PUBREL, so a crash before the function finished loses it. Use qos: 1 (at-least-once) or 0',
    })
  }
  return issues
}

export const mqttConnector: ConnectorDefinition<MqttTriggerOptions, MqttConnectionOptions, MqttOutputOptions> = {
  kind: 'mqtt',
  connectionSchema: mqttConnectionSchema,
  triggerSchema: mqttTriggerSchema,
  outputSchema: mqttOutputSchema,
  validateTrigger,
  createTrigger: (spec) => new MqttConnector(spec),
  takeOverSession,
  createOutput: (spec) => {
    const { connection, connectionName } = spec
    if (!connection || !connectionName)
      throw new SluiceError('SLUICE_ERR_CONFIG_CONNECTION', `output ${spec.outputName} of function ${spec.functionName} has no mqtt connection`)
    return new MqttOutput({ ...spec, connection, connectionName })
  },
}
