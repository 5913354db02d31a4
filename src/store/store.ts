import type { ErrorInfo } from '../errors.js'
import type { Lease, LeaseAttempt, TriggerEvent, VersionedRow } from '../sdk/index.js'

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
  /** Present while a replay of the letter runs on some gateway instance (it holds the replay lease). */
  replay?: { owner: string; attempt: number }
}

/** The lease a replay of dead letter `id` holds, so one letter replays once across instances. */
export const replayLeaseKey = (id: string): string => `dead-letter-replay:${id}`

/**
 * A dead-letter row as both stores read it, joined with its replay lease (`replay_owner` is null
 * when no replay runs). Times are ISO text (SQLite) or Date (PostgreSQL).
 */
export interface DeadLetterRow {
  id: string
  function: string
  event: string
  error: string
  attempts: number
  first_attempt_at: string | Date
  failed_at: string | Date
  replay_owner: string | null
  replay_attempt: number | null
}

const iso = (t: string | Date): string => (typeof t === 'string' ? t : t.toISOString())

/** A dead-letter row as the API shows it. */
export const toDeadLetter = (r: DeadLetterRow): DeadLetter => ({
  id: r.id,
  function: r.function,
  event: JSON.parse(r.event) as DeadLetter['event'],
  error: JSON.parse(r.error) as DeadLetter['error'],
  attempts: r.attempts,
  firstAttemptAt: iso(r.first_attempt_at),
  failedAt: iso(r.failed_at),
  ...(r.replay_owner !== null ? { replay: { owner: r.replay_owner, attempt: r.replay_attempt ?? 1 } } : {}),
})

export interface DeadLetterQuery {
  function?: string
  /** Only letters whose error code is this. */
  code?: string
  limit?: number
  /** Letters after this id (paging, oldest first). */
  after?: string
}

export type { Lease, LeaseAttempt }

/** Whether the store can serve reads and writes now (GET /admin/health). */
export interface StoreHealth {
  kind: 'sqlite' | 'postgres'
  up: boolean
  /** Why it is down, e.g. the connection error. Never holds a password. */
  detail?: string
  /** ISO time of the last change of `up`. */
  since: string
}

/**
 * One gateway instance's row in the cluster registry (src/cluster). `doc` is the instance's own
 * report (version, connections, backlog, MQTT sessions...), opaque to the store.
 */
export interface InstanceRow {
  id: string
  /** Distinguishes processes that used the same id (a restart, or a misconfigured duplicate). */
  incarnation: string
  doc: unknown
  /** ISO time of the last heartbeat (store clock). */
  heartbeatAt: string
  /** Milliseconds since the last heartbeat, on the store's clock. */
  ageMs: number
}

/** What a heartbeat replaced: the row's incarnation and age before this write (absent: a new row). */
export interface HeartbeatResult {
  previous?: { incarnation: string; ageMs: number }
}

export interface FunctionKey {
  name: string
  createdAt: string
}

/**
 * Durable state of a gateway: dead letters, connector state (timer schedules), cross-instance
 * leases and function keys. Every write has reached the disk (or the database) when its promise
 * resolves: the router acknowledges a dead-lettered event at the source only after that.
 * SQLite is the embedded default (one instance); PostgreSQL is shared by several instances.
 * While the store is unavailable, calls reject with SLUICE_ERR_STORE_DOWN (retriable).
 *
 * Leases decide which instance does a piece of shared work (a timer tick, a dead-letter replay).
 * Expiry is judged on the store's clock (PostgreSQL `now()`), so instance clocks need not agree.
 * A lease is held (acquired, renewed), released (anyone may acquire it at once, same attempt),
 * finished (nobody may acquire it until `retainMs` passes) or expired (the next acquirer takes it
 * over with attempt + 1). Every transition is a compare-and-set on the token.
 */
export interface Store {
  /** `id` (a fresh UUID when absent) makes a retried write idempotent: a second put of one id is a no-op. */
  putDeadLetter(dl: Omit<DeadLetter, 'id' | 'replay'> & { id?: string }): Promise<string>
  getDeadLetter(id: string): Promise<DeadLetter | undefined>
  listDeadLetters(q?: DeadLetterQuery): Promise<DeadLetter[]>
  countDeadLetters(fn?: string): Promise<number>
  deleteDeadLetter(id: string): Promise<boolean>

  getState(scope: string, key: string): Promise<unknown>
  setState(scope: string, key: string, value: unknown): Promise<void>
  /** Removes the value; true when there was one. */
  deleteState(scope: string, key: string): Promise<boolean>

  /** Takes the lease on `key` for `ttlMs` when nobody holds it (or its holding expired or was released). */
  acquireLease(key: string, owner: string, ttlMs: number): Promise<LeaseAttempt>
  /** Extends a holding to `ttlMs` from now; false when the lease was taken over, released or finished. */
  renewLease(lease: Lease, ttlMs: number): Promise<boolean>
  /** Gives the work back undone: the next acquirer gets it at once, with the same attempt. */
  releaseLease(lease: Lease): Promise<boolean>
  /** Records the work as done: nobody acquires `key` for `retainMs`. False when the lease was lost. */
  finishLease(lease: Lease, retainMs: number): Promise<boolean>
  /**
   * True for exactly one caller per key until ttlMs passes (across instances sharing the store): a
   * lease acquired and never released.
   */
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

  /** Writes instance `id`'s row (its heartbeat is now, on the store's clock), whoever held it before. */
  heartbeatInstance(id: string, incarnation: string, doc: unknown): Promise<HeartbeatResult>
  /** Replaces the row's doc without touching its heartbeat, only while `incarnation` holds it. */
  updateInstance(id: string, incarnation: string, doc: unknown): Promise<boolean>
  /** Every row, oldest id first. Rows older than `forgetMs` are deleted first. */
  listInstances(forgetMs: number): Promise<InstanceRow[]>

  /** Whether the store is reachable now. */
  health(): StoreHealth
  /** Idempotent. */
  close(): Promise<void>
}
