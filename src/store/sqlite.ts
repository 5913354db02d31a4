import { randomUUID } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { SluiceError } from '../errors.js'
import type { VersionedRow } from '../sdk/index.js'
import {
  replayLeaseKey,
  toDeadLetter,
  type DeadLetter,
  type DeadLetterRow,
  type HeartbeatResult,
  type InstanceRow,
  type DeadLetterQuery,
  type FunctionKey,
  type Lease,
  type LeaseAttempt,
  type Store,
  type StoreHealth,
} from './store.js'

/** Dead letters with the replay lease that is held on each, if any (`?` is now, in ms). */
const LETTERS = `SELECT d.*, l.owner AS replay_owner, l.attempt AS replay_attempt FROM dead_letters d
  LEFT JOIN leases l ON l.key = '${replayLeaseKey('')}' || d.id AND l.state = 'held' AND l.expires_at > ?`

const SCHEMA = `
CREATE TABLE IF NOT EXISTS dead_letters (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  function TEXT NOT NULL,
  code TEXT NOT NULL,
  event TEXT NOT NULL,
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  first_attempt_at TEXT NOT NULL,
  failed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_function ON dead_letters (function, seq);
CREATE TABLE IF NOT EXISTS state (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS leases (
  key TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  token TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  state TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versioned_state (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS function_keys (
  function TEXT NOT NULL,
  name TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (function, name)
);
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY,
  incarnation TEXT NOT NULL,
  doc TEXT NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
`

interface LeaseRow {
  owner: string
  token: string
  attempt: number
  state: 'held' | 'released' | 'done'
  expires_at: number
}

/** Held, released and expired rows are forgotten a day after they expire; done rows when their retention ends. */
const LEASE_FORGET_MS = 24 * 3600 * 1000
const PRUNE_EVERY_MS = 60_000

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a resolved write
 * survives a crash of the process and of the machine. `:memory:` gives a throwaway store.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database
  private closed = false
  private lastPrune = 0
  private readonly since = new Date().toISOString()

  constructor(path: string) {
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
      this.db = new Database(path)
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = FULL')
      this.db.pragma('busy_timeout = 5000')
      this.db.exec(SCHEMA)
    } catch (e) {
      throw new SluiceError('SLUICE_ERR_STORE_OPEN', `cannot open the state store at ${path}: ${(e as Error).message}`, { cause: e, context: { path } })
    }
  }

  async putDeadLetter(dl: Omit<DeadLetter, 'id' | 'replay'> & { id?: string }): Promise<string> {
    const id = dl.id ?? randomUUID()
    this.db
      .prepare(
        'INSERT INTO dead_letters (id, function, code, event, error, attempts, first_attempt_at, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      )
      .run(id, dl.function, dl.error.code, JSON.stringify(dl.event), JSON.stringify(dl.error), dl.attempts, dl.firstAttemptAt, dl.failedAt)
    return id
  }

  async getDeadLetter(id: string): Promise<DeadLetter | undefined> {
    const row = this.db.prepare(`${LETTERS} WHERE d.id = ?`).get(Date.now(), id) as DeadLetterRow | undefined
    return row && toDeadLetter(row)
  }

  async listDeadLetters(q: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    const where: string[] = []
    const args: unknown[] = [Date.now()]
    if (q.function) {
      where.push('d.function = ?')
      args.push(q.function)
    }
    if (q.code) {
      where.push('d.code = ?')
      args.push(q.code)
    }
    if (q.after) {
      where.push('d.seq > COALESCE((SELECT seq FROM dead_letters WHERE id = ?), 0)')
      args.push(q.after)
    }
    const sql = `${LETTERS} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.seq LIMIT ?`
    args.push(Math.min(Math.max(q.limit ?? 100, 1), 1000))
    return (this.db.prepare(sql).all(...args) as DeadLetterRow[]).map(toDeadLetter)
  }

  async countDeadLetters(fn?: string): Promise<number> {
    const row = (
      fn
        ? this.db.prepare('SELECT COUNT(*) AS n FROM dead_letters WHERE function = ?').get(fn)
        : this.db.prepare('SELECT COUNT(*) AS n FROM dead_letters').get()
    ) as { n: number }
    return row.n
  }

  async deleteDeadLetter(id: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM dead_letters WHERE id = ?').run(id).changes > 0
  }

  async getState(scope: string, key: string): Promise<unknown> {
    const row = this.db.prepare('SELECT value FROM state WHERE scope = ? AND key = ?').get(scope, key) as { value: string } | undefined
    return row ? (JSON.parse(row.value) as unknown) : undefined
  }

  async setState(scope: string, key: string, value: unknown): Promise<void> {
    this.db
      .prepare(
        'INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      )
      .run(scope, key, JSON.stringify(value), new Date().toISOString())
  }

  async deleteState(scope: string, key: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM state WHERE scope = ? AND key = ?').run(scope, key).changes > 0
  }

  async acquireLease(key: string, owner: string, ttlMs: number): Promise<LeaseAttempt> {
    const tx = this.db.transaction((): LeaseAttempt => {
      const now = Date.now()
      if (now - this.lastPrune > PRUNE_EVERY_MS) {
        this.lastPrune = now
        this.db.prepare("DELETE FROM leases WHERE (state = 'done' AND expires_at <= ?) OR expires_at <= ?").run(now, now - LEASE_FORGET_MS)
      }
      const row = this.db.prepare('SELECT owner, token, attempt, state, expires_at FROM leases WHERE key = ?').get(key) as LeaseRow | undefined
      let attempt = 1
      if (row && row.state === 'released') attempt = row.attempt
      else if (row && row.state === 'held' && row.expires_at <= now) attempt = row.attempt + 1
      else if (row && row.expires_at > now) return { acquired: false, owner: row.owner, finished: row.state === 'done', retryInMs: row.expires_at - now }
      const token = randomUUID()
      this.db
        .prepare(
          "INSERT INTO leases (key, owner, token, attempt, state, expires_at) VALUES (?, ?, ?, ?, 'held', ?) ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token, attempt = excluded.attempt, state = 'held', expires_at = excluded.expires_at",
        )
        .run(key, owner, token, attempt, now + ttlMs)
      return { acquired: true, lease: { key, token, attempt } }
    })
    return tx.immediate()
  }

  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    return (
      this.db.prepare("UPDATE leases SET expires_at = ? WHERE key = ? AND token = ? AND state = 'held'").run(Date.now() + ttlMs, lease.key, lease.token)
        .changes > 0
    )
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    return (
      this.db
        .prepare("UPDATE leases SET state = 'released', owner = '', expires_at = ? WHERE key = ? AND token = ? AND state = 'held'")
        .run(Date.now(), lease.key, lease.token).changes > 0
    )
  }

  async finishLease(lease: Lease, retainMs: number): Promise<boolean> {
    return (
      this.db
        .prepare("UPDATE leases SET state = 'done', expires_at = ? WHERE key = ? AND token = ? AND state = 'held'")
        .run(Date.now() + retainMs, lease.key, lease.token).changes > 0
    )
  }

  async claim(key: string, ttlMs: number): Promise<boolean> {
    return (await this.acquireLease(key, 'claim', ttlMs)).acquired
  }

  async listVersioned(scope: string, prefix: string): Promise<VersionedRow[]> {
    const rows = this.db
      .prepare('SELECT key, value, version FROM versioned_state WHERE scope = ? AND substr(key, 1, length(?)) = ? ORDER BY key')
      .all(scope, prefix, prefix) as Array<{ key: string; value: string; version: number }>
    return rows.map((r) => ({ key: r.key, value: JSON.parse(r.value) as unknown, version: String(r.version) }))
  }

  async compareAndSet(scope: string, key: string, value: unknown, version: string | undefined): Promise<string | undefined> {
    const json = JSON.stringify(value)
    if (version === undefined) {
      const r = this.db
        .prepare('INSERT INTO versioned_state (scope, key, value, version) VALUES (?, ?, ?, 1) ON CONFLICT (scope, key) DO NOTHING')
        .run(scope, key, json)
      return r.changes > 0 ? '1' : undefined
    }
    const v = Number(version)
    if (!Number.isSafeInteger(v)) return undefined
    const r = this.db.prepare('UPDATE versioned_state SET value = ?, version = ? WHERE scope = ? AND key = ? AND version = ?').run(json, v + 1, scope, key, v)
    return r.changes > 0 ? String(v + 1) : undefined
  }

  async addFunctionKey(fn: string, name: string, hash: string): Promise<void> {
    this.db
      .prepare(
        'INSERT INTO function_keys (function, name, hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (function, name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at',
      )
      .run(fn, name, hash, new Date().toISOString())
  }

  async functionKeyHashes(fn: string): Promise<string[]> {
    return (this.db.prepare('SELECT hash FROM function_keys WHERE function = ?').all(fn) as Array<{ hash: string }>).map((r) => r.hash)
  }

  async listFunctionKeys(fn: string): Promise<FunctionKey[]> {
    return (
      this.db.prepare('SELECT name, created_at FROM function_keys WHERE function = ? ORDER BY name').all(fn) as Array<{ name: string; created_at: string }>
    ).map((r) => ({ name: r.name, createdAt: r.created_at }))
  }

  async deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM function_keys WHERE function = ? AND name = ?').run(fn, name).changes > 0
  }

  async heartbeatInstance(id: string, incarnation: string, doc: unknown): Promise<HeartbeatResult> {
    const now = Date.now()
    return this.db.transaction((): HeartbeatResult => {
      const prev = this.db.prepare('SELECT incarnation, heartbeat_at FROM instances WHERE id = ?').get(id) as
        | { incarnation: string; heartbeat_at: number }
        | undefined
      this.db
        .prepare(
          'INSERT INTO instances (id, incarnation, doc, heartbeat_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, doc = excluded.doc, heartbeat_at = excluded.heartbeat_at',
        )
        .run(id, incarnation, JSON.stringify(doc), now)
      return prev ? { previous: { incarnation: prev.incarnation, ageMs: Math.max(0, now - prev.heartbeat_at) } } : {}
    })()
  }

  async updateInstance(id: string, incarnation: string, doc: unknown): Promise<boolean> {
    return this.db.prepare('UPDATE instances SET doc = ? WHERE id = ? AND incarnation = ?').run(JSON.stringify(doc), id, incarnation).changes > 0
  }

  async listInstances(forgetMs: number): Promise<InstanceRow[]> {
    const now = Date.now()
    this.db.prepare('DELETE FROM instances WHERE heartbeat_at < ?').run(now - forgetMs)
    const rows = this.db.prepare('SELECT id, incarnation, doc, heartbeat_at FROM instances ORDER BY id').all() as Array<{
      id: string
      incarnation: string
      doc: string
      heartbeat_at: number
    }>
    return rows.map((r) => ({
      id: r.id,
      incarnation: r.incarnation,
      doc: JSON.parse(r.doc) as unknown,
      heartbeatAt: new Date(r.heartbeat_at).toISOString(),
      ageMs: Math.max(0, now - r.heartbeat_at),
    }))
  }

  health(): StoreHealth {
    return { kind: 'sqlite', up: !this.closed, since: this.since, ...(this.closed ? { detail: 'closed' } : {}) }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }
}
