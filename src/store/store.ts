import type { ErrorInfo } from '../errors.js'
import type { TriggerEvent, VersionedRow } from '../sdk/index.js'

/** An event that failed every attempt, kept with what is needed to understand and replay it. */
export interface DeadLetter {
  id: string
  function: string
  /** The event as the function last received it: payload, source, key and source position (meta). */
  event: TriggerEvent
  error: ErrorInfo
  attempts: number
  firstAttemptAt: string
  failedAt: string
}

export interface DeadLetterQuery {
  function?: string
  /** Only letters whose error code is this. */
  code?: string
  limit?: number
  /** Letters after this id (paging, oldest first). */
  after?: string
}

export interface FunctionKey {
  name: string
  createdAt: string
}

/**
 * Durable state of a gateway: dead letters, connector state (timer schedules), cross-instance
 * claims and function keys. Every write has reached the disk (or the database) when its promise
 * resolves: the router acknowledges a dead-lettered event at the source only after that.
 * SQLite is the embedded default; the interface is async so PostgreSQL can implement it.
 */
export interface Store {
  putDeadLetter(dl: Omit<DeadLetter, 'id'>): Promise<string>
  getDeadLetter(id: string): Promise<DeadLetter | undefined>
  listDeadLetters(q?: DeadLetterQuery): Promise<DeadLetter[]>
  countDeadLetters(fn?: string): Promise<number>
  deleteDeadLetter(id: string): Promise<boolean>

  getState(scope: string, key: string): Promise<unknown>
  setState(scope: string, key: string, value: unknown): Promise<void>
  /** True for exactly one caller per key until ttlMs passes (across instances sharing the store). */
  claim(key: string, ttlMs: number): Promise<boolean>
  /** Compare-and-set rows of `scope` whose key starts with `prefix` (apart from getState/setState). */
  listVersioned(scope: string, prefix: string): Promise<VersionedRow[]>
  /**
   * Writes the row only if its version is still `version` (undefined: only if it does not exist).
   * Resolves with the new version, or undefined when the row had changed.
   */
  compareAndSet(scope: string, key: string, value: unknown, version: string | undefined): Promise<string | undefined>

  addFunctionKey(fn: string, name: string, hash: string): Promise<void>
  functionKeyHashes(fn: string): Promise<string[]>
  listFunctionKeys(fn: string): Promise<FunctionKey[]>
  deleteFunctionKey(fn: string, name: string): Promise<boolean>

  /** Idempotent. */
  close(): Promise<void>
}
