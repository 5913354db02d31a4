import type { ConnectorDefinition } from '../../src/sdk/index.js'
import { HttpConnector } from './http-connector.js'
import { httpTriggerSchema, type HttpTriggerOptions } from './options.js'

export { HttpConnector, routeUrl } from './http-connector.js'
export { httpTriggerSchema, type HttpTriggerOptions } from './options.js'

export const httpConnector: ConnectorDefinition<HttpTriggerOptions, never> = {
  kind: 'http',
  triggerSchema: httpTriggerSchema,
  http: true,
  createTrigger: (spec) => new HttpConnector(spec),
}
