/**
 * What only the PostgreSQL store does: schema migrations under an advisory lock, refusing a schema
 * newer than the build, and clear coded errors for a store that cannot be opened. Runs against the
 * local server (127.0.0.1:5432, trust auth); the wrong-password case needs password auth and is
 * in test/cli/store-start.test.ts with a private cluster.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { hasCode } from '../../src/errors.js'
import { POSTGRES_MIGRATIONS } from '../../src/store/migrations/postgres/index.js'
import { PostgresStore } from '../../src/store/postgres.js'
import { admin, memoryLog, PG_URL, tempSchema, uniqueName } from './pg.js'

async function open(schema: string, extra: Partial<Parameters<typeof PostgresStore.open>[0]> = {}): Promise<PostgresStore> {
  const s = await PostgresStore.open({ url: PG_URL, schema, log: memoryLog(), ...extra })
  onTestFinished(() => s.close())
  return s
}

async function rejection(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    const s = await p
    await (s as PostgresStore).close()
  } catch (e) {
    if (hasCode(e)) return e
    throw e
  }
  throw new Error('expected a rejection')
}

describe('PostgreSQL store migrations', () => {
  it('migrates a fresh schema once when two instances start at the same moment', async () => {
    const schema = tempSchema()
    const [a, b, c] = await Promise.all([open(schema), open(schema), open(schema)])
    const applied = [a, b, c].map((s) => s.migration.applied)
    const latest = POSTGRES_MIGRATIONS.map((m) => m.version)
    expect(applied.filter((x) => x.length > 0)).toEqual([latest])
    expect([a, b, c].map((s) => s.migration.version)).toEqual([latest.at(-1), latest.at(-1), latest.at(-1)])
    const rows = await admin<{ version: number; name: string }>(`SELECT version, name FROM ${schema}.schema_migrations ORDER BY version`)
    expect(rows).toEqual(POSTGRES_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })))
    // A later start finds nothing to do, and the store works.
    const d = await open(schema)
    expect(d.migration.applied).toEqual([])
    await d.setState('s', 'k', 1)
    expect(await a.getState('s', 'k')).toBe(1)
  })

  it('applies only the migrations a schema lacks, in order, and records each', async () => {
    const schema = tempSchema()
    const first = POSTGRES_MIGRATIONS.slice(0, 1)
    const a = await open(schema, { migrations: first })
    expect(a.migration.applied).toEqual([1])
    const extra = [...POSTGRES_MIGRATIONS, { version: POSTGRES_MIGRATIONS.length + 1, name: 'test_extra', sql: 'CREATE TABLE test_extra (x int)' }]
    const b = await open(schema, { migrations: extra })
    expect(b.migration.applied).toEqual(extra.slice(1).map((m) => m.version))
    expect((await admin(`SELECT version FROM ${schema}.schema_migrations`)).length).toBe(extra.length)
  })

  it('refuses to start on a schema migrated by a newer sluice, with a coded error', async () => {
    const schema = tempSchema()
    await open(schema)
    await admin(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES (999, 'from_the_future')`)
    const e = await rejection(PostgresStore.open({ url: PG_URL, schema, log: memoryLog() }))
    expect(e.code).toBe('SLUICE_ERR_STORE_SCHEMA_NEWER')
    expect(e.message).toContain('version 999')
    expect(e.message).toContain(`(${POSTGRES_MIGRATIONS.length})`)
  })

  it('rolls a failed migration back whole: nothing of it, nor its record, remains', async () => {
    const schema = tempSchema()
    const bad = [
      ...POSTGRES_MIGRATIONS,
      { version: POSTGRES_MIGRATIONS.length + 1, name: 'broken', sql: 'CREATE TABLE half_done (x int); SELECT no_such_function()' },
    ]
    const e = await rejection(PostgresStore.open({ url: PG_URL, schema, log: memoryLog(), migrations: bad }))
    expect(e.code).toBe('SLUICE_ERR_STORE_MIGRATION')
    expect(e.message).toMatch(/migration \d+ \(broken\)/)
    // One transaction: even migration 1 of the same run was rolled back, schema and all.
    expect(await admin(`SELECT 1 FROM information_schema.tables WHERE table_schema = $1`, [schema])).toEqual([])
  })
})

describe('PostgreSQL store start errors', () => {
  it('names a missing database', async () => {
    const db = uniqueName('sluice_missing')
    const e = await rejection(PostgresStore.open({ url: `postgres://postgres:s3cret-pw@127.0.0.1:5432/${db}`, log: memoryLog() }))
    expect(e.code).toBe('SLUICE_ERR_STORE_DATABASE_MISSING')
    expect(e.message).toContain(db)
    expect(e.message).not.toContain('s3cret-pw')
  })

  it('names an unreachable server and a host that does not resolve', async () => {
    const refused = await rejection(PostgresStore.open({ url: 'postgres://postgres:s3cret-pw@127.0.0.1:1/db', log: memoryLog() }))
    expect(refused.code).toBe('SLUICE_ERR_STORE_UNREACHABLE')
    expect(refused.message).toContain('127.0.0.1:1')
    expect(refused.message).not.toContain('s3cret-pw')
    const unknown = await rejection(PostgresStore.open({ url: 'postgres://u:s3cret-pw@no-such-host.invalid:5432/db', log: memoryLog() }))
    expect(unknown.code).toBe('SLUICE_ERR_STORE_UNREACHABLE')
    expect(unknown.message).toContain('does not resolve')
  })

  it('rejects a URL that is not a PostgreSQL URL without echoing it', async () => {
    const notUrl = await rejection(PostgresStore.open({ url: 'user:s3cret-pw at db', log: memoryLog() }))
    expect(notUrl.code).toBe('SLUICE_ERR_STORE_URL')
    expect(notUrl.message).not.toContain('s3cret-pw')
    const mysql = await rejection(PostgresStore.open({ url: 'mysql://u:s3cret-pw@db/x', log: memoryLog() }))
    expect(mysql.code).toBe('SLUICE_ERR_STORE_URL')
    expect(mysql.message).toContain('mysql:')
    expect(mysql.message).not.toContain('s3cret-pw')
  })
})
