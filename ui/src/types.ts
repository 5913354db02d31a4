/** The server's wire types, shared with src/ (type imports only: nothing of the server is bundled). */
export type { FunctionInfo, HealthReport } from '../../src/http/admin.js'
export type { LiveActivity, LiveFunction, LiveHistory, LiveSample, LiveSnapshot } from '../../src/http/live-types.js'
export type { InvocationRecord } from '../../src/router/stats.js'
export type { InvocationResult, LogLine, Outcome, TriggerEvent } from '../../src/sdk/index.js'
export type { DeadLetter } from '../../src/store/store.js'
