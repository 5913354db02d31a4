import type { ConnectorDefinition } from '../sdk/index.js'
import { httpConnector } from '../../connectors/http/index.js'
import { timerConnector } from '../../connectors/timer/index.js'

/** Every connector built into sluice. Config validation and the gateway both read this list. */
export const CONNECTORS: readonly ConnectorDefinition[] = [httpConnector, timerConnector] as readonly ConnectorDefinition[]
