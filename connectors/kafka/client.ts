import { Kafka, logLevel, type KafkaConfig, type logCreator, type SASLOptions } from 'kafkajs'
import { SluiceError, type ErrorCode, type Logger } from '../../src/sdk/index.js'
import type { KafkaConnectionOptions } from './options.js'

/** kafkajs log levels -> ours. kafkajs logs every pause/resume and join at INFO: debug here. */
const LEVELS: Record<number, 'error' | 'warn' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'debug',
  [logLevel.DEBUG]: 'debug',
}

/** Routes kafkajs's logs into the gateway's pino logger. */
function logCreatorFor(log: Logger): logCreator {
  return () =>
    ({ namespace, level, log: entry }) => {
      const { message, timestamp: _t, logger: _l, ...extra } = entry
      log[LEVELS[level] ?? 'debug']({ kafkajs: namespace, ...extra }, String(message))
    }
}

/** A kafkajs client for one connection (`ssl` and `sasl` are passed through). */
export function createKafka(conn: KafkaConnectionOptions, log: Logger, clientIdSuffix = ''): Kafka {
  const config: KafkaConfig = {
    clientId: `${conn.clientId}${clientIdSuffix}`,
    brokers: conn.brokers,
    connectionTimeout: conn.connectionTimeoutMs,
    requestTimeout: conn.requestTimeoutMs,
    logLevel: logLevel.INFO,
    logCreator: logCreatorFor(log),
  }
  // Copies: the validated config is frozen, and kafkajs writes into these objects
  // (sasl.authenticationProvider), which threw "object is not extensible" on every SASL connect.
  if (conn.ssl !== undefined) config.ssl = typeof conn.ssl === 'object' ? { ...conn.ssl } : conn.ssl
  if (conn.sasl) config.sasl = { ...conn.sasl } as SASLOptions
  return new Kafka(config)
}

/** Context attached to mapped errors (function, connection, group, topic...). */
export type KafkaErrorContext = { function?: string; connection?: string; [key: string]: unknown }

interface KafkaJsError {
  name?: string
  type?: string
  message?: string
  retriable?: boolean
  cause?: unknown
  originalError?: unknown
}

/** The error and its causes (kafkajs wraps: NumberOfRetriesExceeded -> ConnectionError ...). */
function chain(e: unknown): KafkaJsError[] {
  const out: KafkaJsError[] = []
  let cur: unknown = e
  while (cur !== null && typeof cur === 'object' && out.length < 8 && !out.includes(cur as KafkaJsError)) {
    const k = cur as KafkaJsError
    out.push(k)
    cur = k.cause ?? k.originalError
  }
  return out
}

const CONNECTION_ERRORS = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
])
const AUTH_TYPES = /AUTHORIZATION_FAILED|SASL_AUTHENTICATION_FAILED|ILLEGAL_SASL_STATE|UNSUPPORTED_SASL_MECHANISM/

const REBALANCE_TYPES = ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'NOT_COORDINATOR_FOR_GROUP']

/**
 * True for the coordinator's "the group moved on" answers (REBALANCE_IN_PROGRESS,
 * ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, NOT_COORDINATOR_FOR_GROUP), or for `type` only.
 */
export function isRebalanceError(e: unknown, type?: string): boolean {
  return chain(e).some((k) => k.type !== undefined && (type === undefined ? REBALANCE_TYPES.includes(k.type) : k.type === type))
}

/**
 * Maps a kafkajs error to a coded SluiceError at the connector boundary: authentication and
 * authorization failures, unreachable brokers, else `fallback`. The message names every cause.
 */
export function kafkaError(e: unknown, fallback: ErrorCode, context: KafkaErrorContext): SluiceError {
  if (e instanceof SluiceError) return e
  const errs = chain(e)
  let code = fallback
  if (errs.some((k) => k.name === 'KafkaJSSASLAuthenticationError' || (k.type !== undefined && AUTH_TYPES.test(k.type))))
    code = 'SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED'
  else if (errs.some((k) => k.name !== undefined && CONNECTION_ERRORS.has(k.name))) code = 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION'
  const messages: string[] = []
  for (const k of errs) if (k.message && !messages.includes(k.message)) messages.push(k.message)
  return new SluiceError(code, messages.join(': ') || String(e), { cause: e, context })
}
