/** The public API of sluice: run a gateway in code, and the types a connector or test needs. */
export { Gateway, type GatewayOptions } from './gateway.js'
export { loadConfig, parseConfig, formatIssue, issuesOf, type ConfigIssue, type LoadedConfig, type LoadOptions } from './config/load.js'
export { CONNECTORS } from './config/connectors.js'
export type { GatewayConfig, FunctionConfig, ConnectionConfig } from './config/schema.js'
export { ERRORS, SluiceError, hasCode, toInfo, type ErrorCode, type ErrorInfo } from './errors.js'
export { CHANNELS } from './channels.js'
export type { Store, DeadLetter } from './store/store.js'
export * from './sdk/index.js'
/** Types for function authors (also the types-only entry `sluice/function`). */
export type * from './sdk/function.js'
