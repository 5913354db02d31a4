import { randomUUID } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { SluiceError } from '../errors.js'
import type { VersionedRow } from '../sdk/index.js'
import type { DeadLetter, DeadLetterQuery, FunctionKey, Store } from './store.js'

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
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
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
`

interface DeadLetterRow {
  id: string
  function: string
  event: string
  error: string
  attempts: number
  first_attempt_at: string
  failed_at: string
}

const toDeadLetter = (r: DeadLetterRow): DeadLetter => ({
  id: r.id,
  function: r.function,
  event: JSON.parse(r.event) as DeadLetter['event'],
  error: JSON.parse(r.error) as DeadLetter['error'],
  attempts: r.attempts,
  firstAttemptAt: r.first_attempt_at,
  failedAt: r.failed_at,
})

/**
 * The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a resolved write
 * survives a crash of the process and of the machine. `:memory:` gives a throwaway store.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database
  private closed = false

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

  async putDeadLetter(dl: Omit<DeadLetter, 'id'>): Promise<string> {
    const id = randomUUID()
    this.db
      .prepare(
        'INSERT INTO dead_letters (id, function, code, event, error, attempts, first_attempt_at, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(id, dl.function, dl.error.code, JSON.stringify(dl.event), JSON.stringify(dl.error), dl.attempts, dl.firstAttemptAt, dl.failedAt)
    return id
  }

  async getDeadLetter(id: string): Promise<DeadLetter | undefined> {
    const row = this.db.prepare('SELECT * FROM dead_letters WHERE id = ?').get(id) as DeadLetterRow | undefined
    return row && toDeadLetter(row)
  }

  async listDeadLetters(q: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    const where: string[] = []
    const args: unknown[] = []
    if (q.function) {
      where.push('function = ?')
      args.push(q.function)
    }
    if (q.code) {
      where.push('code = ?')
      args.push(q.code)
    }
    if (q.after) {
      where.push('seq > COALESCE((SELECT seq FROM dead_letters WHERE id = ?), 0)')
      args.push(q.after)
    }
    const sql = `SELECT * FROM dead_letters ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT ?`
    args.push(Math.min(Math.max(q.limit ?? 100, 1), 1000))
    return (this.db.prepare(sql).all(...args) as DeadLetterRow[]).map(toDeadLetter)
  }

  async countDeadLetters(fn?: string): Promise<number> {
    const row = (fn
      ? this.db.prepare('SELECT COUNT(*) AS n FROM dead_letters WHERE function = ?').get(fn)
      : this.db.prepare('SELECT COUNT(*) AS n FROM dead_letters').get()) as { n: number }
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
      .prepare('INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at')
      .run(scope, key, JSON.stringify(value), new Date().toISOString())
  }

  async claim(key: string, ttlMs: number): Promise<boolean> {
    const now = Date.now()
    const tx = this.db.transaction(() => {
      this.db.prepare('DELETE FROM claims WHERE expires_at <= ?').run(now)
      return this.db.prepare('INSERT OR IGNORE INTO claims (key, expires_at) VALUES (?, ?)').run(key, now + ttlMs).changes > 0
    })
    return tx.immediate()
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
      const r = this.db.prepare('INSERT INTO versioned_state (scope, key, value, version) VALUES (?, ?, ?, 1) ON CONFLICT (scope, key) DO NOTHING').run(scope, key, json)
      return r.changes > 0 ? '1' : undefined
    }
    const v = Number(version)
    if (!Number.isSafeInteger(v)) return undefined
    const r = this.db.prepare('UPDATE versioned_state SET value = ?, version = ? WHERE scope = ? AND key = ? AND version = ?').run(json, v + 1, scope, key, v)
    return r.changes > 0 ? String(v + 1) : undefined
  }

  async addFunctionKey(fn: string, name: string, hash: string): Promise<void> {
    this.db
      .prepare('INSERT INTO function_keys (function, name, hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (function, name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at')
      .run(fn, name, hash, new Date().toISOString())
  }

  async functionKeyHashes(fn: string): Promise<string[]> {
    return (this.db.prepare('SELECT hash FROM function_keys WHERE function = ?').all(fn) as Array<{ hash: string }>).map((r) => r.hash)
  }

  async listFunctionKeys(fn: string): Promise<FunctionKey[]> {
    return (this.db.prepare('SELECT name, created_at FROM function_keys WHERE function = ? ORDER BY name').all(fn) as Array<{ name: string; created_at: string }>).map(
      (r) => ({ name: r.name, createdAt: r.created_at }),
    )
  }

  async deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM function_keys WHERE function = ? AND name = ?').run(fn, name).changes > 0
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }
}
