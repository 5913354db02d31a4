import { SluiceError, type ErrorCode } from '../../src/sdk/index.js'

/** The `code` of an @azure/event-hubs (core-amqp) MessagingError, or of a Node system error. */
function sdkCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

const BY_SDK_CODE: Record<string, ErrorCode> = {
  UnauthorizedError: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_UNAUTHORIZED',
  MessagingEntityNotFoundError: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_NOT_FOUND',
  ArgumentOutOfRangeError: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_NOT_FOUND',
  ReceiverDisconnectedError: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST',
  MessageTooLargeError: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_MESSAGE_TOO_LARGE',
}

/**
 * Maps an error of the Event Hubs SDK to a coded SluiceError (at the boundary, as the conventions
 * ask): credentials, missing entities, a partition taken over and oversized messages get their own
 * codes; everything else (network, timeouts, a busy or restarting service) is a connection error,
 * which is retriable.
 */
export function eventHubsError(err: unknown, what: string, context: Record<string, unknown>): SluiceError {
  if (err instanceof SluiceError) return err
  // core-amqp's retry throws every attempt's error in an AggregateError: the last one ended it.
  if (err instanceof AggregateError && err.errors.length > 0) {
    const last = eventHubsError(err.errors[err.errors.length - 1], what, context)
    return new SluiceError(last.code, `${last.message} (after ${err.errors.length} attempts)`, { cause: err, context: last.context })
  }
  const sdk = sdkCode(err)
  const code: ErrorCode = (sdk && BY_SDK_CODE[sdk]) || 'SLUICE_ERR_CONNECTOR_EVENTHUBS_CONNECTION'
  const message = err instanceof Error ? err.message : String(err)
  return new SluiceError(code, `${what}: ${message}${sdk ? ` (${sdk})` : ''}`, { cause: err, context: { ...context, ...(sdk ? { sdkCode: sdk } : {}) } })
}
