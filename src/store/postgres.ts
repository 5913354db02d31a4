import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { SluiceError } from '../errors.js'
import type { Logger, VersionedRow } from '../sdk/index.js'
import { migrate, type MigrationReport } from './migrate.js'
import { POSTGRES_MIGRATIONS, type Migration } from './migrations/postgres/index.js'
import { isConnectionError, parseStoreUrl, redactUrl, startError } from './pg-errors.js'
import { PgHealth } from './pg-health.js'
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

export interface PostgresStoreOptions {
  url: string
  /** Schema holding the tables (created when missing). Default: sluice. */
  schema?: string
  /** Most pooled connections. Default: 10. */
  poolMax?: number
  log: Logger
  /** Default: every migration of this build (tests pass fewer or more). */
  migrations?: readonly Migration[]
}

export const SCHEMA_PATTERN = '^[a-z_][a-z0-9_]{0,62}$'

const LETTERS = `SELECT d.*, l.owner AS replay_owner, l.attempt AS replay_attempt FROM dead_letters d
  LEFT JOIN leases l ON l.key = '${replayLeaseKey('')}' || d.id AND l.state = 'held' AND l.expires_at > now()`
const MS = "* interval '1 millisecond'"
const PRUNE_EVERY_MS = 60_000

/**
 * The shared store: PostgreSQL through a node-postgres pool. Every method is one statement in
 * autocommit (durable when it resolves, with the server's default synchronous_commit), and every
 * time comparison uses the server's `now()`. Open with `PostgresStore.open`, which connects and
 * migrates first, so a bad URL, a wrong password or a missing database fails the start.
 */
export class PostgresStore implements Store {
  private closePromise: Promise<void> | undefined
  private lastPrune = 0

  private constructor(
    private readonly pool: pg.Pool,
    private readonly healthState: PgHealth,
    readonly migration: MigrationReport,
  ) {}

  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = opts.schema ?? 'sluice'
    if (!new RegExp(SCHEMA_PATTERN).test(schema)) {
      throw new SluiceError('SLUICE_ERR_STORE_URL', `store.schema ${JSON.stringify(schema)} must be lower-case letters, digits and _`, {
        context: { path: 'store.schema' },
      })
    }
    parseStoreUrl(opts.url)
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolMax ?? 10,
      connectionTimeoutMillis: 5000,
      query_timeout: 15000,
      keepAlive: true,
      application_name: 'sluice',
      options: `-c search_path=${schema}`,
    })
    const health = new PgHealth(pool, opts.log)
    // An idle client whose server went away emits here; without a listener Node would crash.
    pool.on('error', (e) => health.markDown(e.message))
    let client: pg.PoolClient | undefined
    try {
      client = await pool.connect()
      const report = await migrate(client, schema, opts.migrations ?? POSTGRES_MIGRATIONS, opts.log)
      client.release()
      opts.log.info({ store: 'postgres', url: redactUrl(opts.url), schema, version: report.version }, 'store open')
      return new PostgresStore(pool, health, report)
    } catch (e) {
      client?.release(true)
      health.close()
      await pool.end().catch(() => undefined)
      throw startError(e, opts.url)
    }
  }

  private async q<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    if (this.closePromise) throw new SluiceError('SLUICE_ERR_STORE_DOWN', 'the PostgreSQL store is closed')
    try {
      const r = await this.pool.query<R>(sql, params)
      this.healthState.markUp()
      return r
    } catch (e) {
      if (!isConnectionError(e)) throw e
      const reason = (e as Error).message || String(e)
      this.healthState.markDown(reason)
      throw new SluiceError('SLUICE_ERR_STORE_DOWN', `the PostgreSQL store is unavailable: ${reason}`, { cause: e })
    }
  }

  async putDeadLetter(dl: Omit<DeadLetter, 'id' | 'replay'> & { id?: string }): Promise<string> {
    const id = dl.id ?? randomUUID()
    await this.q(
      'INSERT INTO dead_letters (id, function, code, event, error, attempts, first_attempt_at, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING',
      [id, dl.function, dl.error.code, JSON.stringify(dl.event), JSON.stringify(dl.error), dl.attempts, dl.firstAttemptAt, dl.failedAt],
    )
    return id
  }

  async getDeadLetter(id: string): Promise<DeadLetter | undefined> {
    const r = await this.q<DeadLetterRow>(`${LETTERS} WHERE d.id = $1`, [id])
    const row = r.rows[0]
    return row && toDeadLetter(row)
  }

  async listDeadLetters(q: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    const where: string[] = []
    const args: unknown[] = []
    const arg = (v: unknown) => {
      args.push(v)
      return `$${args.length}`
    }
    if (q.function) where.push(`d.function = ${arg(q.function)}`)
    if (q.code) where.push(`d.code = ${arg(q.code)}`)
    if (q.after) where.push(`d.seq > COALESCE((SELECT seq FROM dead_letters WHERE id = ${arg(q.after)}), 0)`)
    const limit = arg(Math.min(Math.max(q.limit ?? 100, 1), 1000))
    const r = await this.q<DeadLetterRow>(`${LETTERS} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY d.seq LIMIT ${limit}`, args)
    return r.rows.map(toDeadLetter)
  }

  async countDeadLetters(fn?: string): Promise<number> {
    const r = fn
      ? await this.q<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters WHERE function = $1', [fn])
      : await this.q<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters')
    return r.rows[0]?.n ?? 0
  }

  async deleteDeadLetter(id: string): Promise<boolean> {
    return ((await this.q('DELETE FROM dead_letters WHERE id = $1', [id])).rowCount ?? 0) > 0
  }

  async getState(scope: string, key: string): Promise<unknown> {
    const r = await this.q<{ value: string }>('SELECT value FROM state WHERE scope = $1 AND key = $2', [scope, key])
    const row = r.rows[0]
    return row ? (JSON.parse(row.value) as unknown) : undefined
  }

  async setState(scope: string, key: string, value: unknown): Promise<void> {
    await this.q(
      'INSERT INTO state (scope, key, value, updated_at) VALUES ($1, $2, $3, now()) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      [scope, key, JSON.stringify(value)],
    )
  }

  async deleteState(scope: string, key: string): Promise<boolean> {
    return ((await this.q('DELETE FROM state WHERE scope = $1 AND key = $2', [scope, key])).rowCount ?? 0) > 0
  }

  async acquireLease(key: string, owner: string, ttlMs: number): Promise<LeaseAttempt> {
    if (Date.now() - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = Date.now()
      await this.q("DELETE FROM leases WHERE (state = 'done' AND expires_at <= now()) OR expires_at <= now() - interval '1 day'")
    }
    const token = randomUUID()
    // One statement: ON CONFLICT locks the existing row and re-checks the WHERE on its latest
    // version, so of two instances racing for an expired lease exactly one updates it.
    const won = await this.q<{ attempt: number }>(
      `INSERT INTO leases AS l (key, owner, token, attempt, state, expires_at) VALUES ($1, $2, $3, 1, 'held', now() + $4 ${MS})
       ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token, state = 'held', expires_at = excluded.expires_at,
         attempt = CASE l.state WHEN 'released' THEN l.attempt WHEN 'done' THEN 1 ELSE l.attempt + 1 END
       WHERE l.state = 'released' OR l.expires_at <= now()
       RETURNING attempt`,
      [key, owner, token, ttlMs],
    )
    const row = won.rows[0]
    if (row) return { acquired: true, lease: { key, token, attempt: row.attempt } }
    const held = await this.q<{ owner: string; state: string; ms: number }>(
      'SELECT owner, state, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::float8 AS ms FROM leases WHERE key = $1',
      [key],
    )
    const h = held.rows[0]
    return { acquired: false, owner: h?.owner ?? '', finished: h?.state === 'done', retryInMs: Math.ceil(h?.ms ?? 0) }
  }

  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    const r = await this.q(`UPDATE leases SET expires_at = now() + $3 ${MS} WHERE key = $1 AND token = $2 AND state = 'held'`, [lease.key, lease.token, ttlMs])
    return (r.rowCount ?? 0) > 0
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    const r = await this.q("UPDATE leases SET state = 'released', owner = '', expires_at = now() WHERE key = $1 AND token = $2 AND state = 'held'", [
      lease.key,
      lease.token,
    ])
    return (r.rowCount ?? 0) > 0
  }

  async finishLease(lease: Lease, retainMs: number): Promise<boolean> {
    const r = await this.q(`UPDATE leases SET state = 'done', expires_at = now() + $3 ${MS} WHERE key = $1 AND token = $2 AND state = 'held'`, [
      lease.key,
      lease.token,
      retainMs,
    ])
    return (r.rowCount ?? 0) > 0
  }

  async claim(key: string, ttlMs: number): Promise<boolean> {
    return (await this.acquireLease(key, 'claim', ttlMs)).acquired
  }

  async listVersioned(scope: string, prefix: string): Promise<VersionedRow[]> {
    const r = await this.q<{ key: string; value: string; version: string }>(
      'SELECT key, value, version FROM versioned_state WHERE scope = $1 AND left(key, length($2)) = $2 ORDER BY key COLLATE "C"',
      [scope, prefix],
    )
    return r.rows.map((row) => ({ key: row.key, value: JSON.parse(row.value) as unknown, version: String(row.version) }))
  }

  async compareAndSet(scope: string, key: string, value: unknown, version: string | undefined): Promise<string | undefined> {
    const json = JSON.stringify(value)
    if (version === undefined) {
      const r = await this.q<{ version: string }>(
        'INSERT INTO versioned_state (scope, key, value, version) VALUES ($1, $2, $3, 1) ON CONFLICT (scope, key) DO NOTHING RETURNING version',
        [scope, key, json],
      )
      return r.rows[0] ? String(r.rows[0].version) : undefined
    }
    if (!/^[1-9][0-9]{0,17}$/.test(version)) return undefined
    const r = await this.q<{ version: string }>(
      'UPDATE versioned_state SET value = $3, version = version + 1 WHERE scope = $1 AND key = $2 AND version = $4 RETURNING version',
      [scope, key, json, version],
    )
    return r.rows[0] ? String(r.rows[0].version) : undefined
  }

  async addFunctionKey(fn: string, name: string, hash: string): Promise<void> {
    await this.q(
      'INSERT INTO function_keys (function, name, hash, created_at) VALUES ($1, $2, $3, now()) ON CONFLICT (function, name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at',
      [fn, name, hash],
    )
  }

  async functionKeyHashes(fn: string): Promise<string[]> {
    return (await this.q<{ hash: string }>('SELECT hash FROM function_keys WHERE function = $1', [fn])).rows.map((r) => r.hash)
  }

  async listFunctionKeys(fn: string): Promise<FunctionKey[]> {
    const r = await this.q<{ name: string; created_at: Date }>('SELECT name, created_at FROM function_keys WHERE function = $1 ORDER BY name COLLATE "C"', [fn])
    return r.rows.map((row) => ({ name: row.name, createdAt: row.created_at.toISOString() }))
  }

  async deleteFunctionKey(fn: string, name: string): Promise<boolean> {
    return ((await this.q('DELETE FROM function_keys WHERE function = $1 AND name = $2', [fn, name])).rowCount ?? 0) > 0
  }

  async heartbeatInstance(id: string, incarnation: string, doc: unknown): Promise<HeartbeatResult> {
    const r = await this.q<{ prev_inc: string | null; prev_age: number | null }>(
      `WITH prev AS (SELECT incarnation, heartbeat_at FROM instances WHERE id = $1)
       INSERT INTO instances (id, incarnation, doc, heartbeat_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, doc = excluded.doc, heartbeat_at = now()
       RETURNING (SELECT incarnation FROM prev) AS prev_inc, (SELECT (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 FROM prev) AS prev_age`,
      [id, incarnation, JSON.stringify(doc)],
    )
    const row = r.rows[0]
    return row?.prev_inc ? { previous: { incarnation: row.prev_inc, ageMs: Math.max(0, Math.round(row.prev_age ?? 0)) } } : {}
  }

  async updateInstance(id: string, incarnation: string, doc: unknown): Promise<boolean> {
    return ((await this.q('UPDATE instances SET doc = $3 WHERE id = $1 AND incarnation = $2', [id, incarnation, JSON.stringify(doc)])).rowCount ?? 0) > 0
  }

  async listInstances(forgetMs: number): Promise<InstanceRow[]> {
    await this.q(`DELETE FROM instances WHERE heartbeat_at < now() - $1::bigint ${MS}`, [forgetMs])
    const r = await this.q<{ id: string; incarnation: string; doc: string; heartbeat_at: Date; age: number }>(
      'SELECT id, incarnation, doc, heartbeat_at, (extract(epoch FROM now() - heartbeat_at) * 1000)::float8 AS age FROM instances ORDER BY id COLLATE "C"',
    )
    return r.rows.map((row) => ({
      id: row.id,
      incarnation: row.incarnation,
      doc: JSON.parse(row.doc) as unknown,
      heartbeatAt: row.heartbeat_at.toISOString(),
      ageMs: Math.max(0, Math.round(row.age)),
    }))
  }

  health(): StoreHealth {
    return this.healthState.get()
  }

  close(): Promise<void> {
    this.closePromise ??= (async () => {
      this.healthState.close()
      await this.pool.end()
    })()
    return this.closePromise
  }
}
