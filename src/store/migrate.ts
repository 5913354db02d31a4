/**
 * Applies the PostgreSQL store's numbered migrations at start. Everything runs in one transaction
 * under a transaction-scoped advisory lock keyed by the schema name, so instances starting at once
 * migrate once (the others wait for the lock, then find nothing to do), and a failed migration
 * leaves nothing half applied. Applied versions are recorded in `<schema>.schema_migrations`.
 */
import type { PoolClient } from 'pg'
import { SluiceError } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import type { Migration } from './migrations/postgres/index.js'

export interface MigrationReport {
  /** The schema's version after the run. */
  version: number
  /** Versions this run applied (empty when another instance, or an earlier start, did). */
  applied: number[]
}

/** A quoted SQL identifier (the schema name is validated by the config schema too). */
export const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`

export async function migrate(client: PoolClient, schema: string, migrations: readonly Migration[], log: Logger): Promise<MigrationReport> {
  const known = migrations.reduce((m, x) => Math.max(m, x.version), 0)
  await client.query('BEGIN')
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('sluice:migrate:' || $1))", [schema])
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`)
    await client.query(`SET LOCAL search_path TO ${ident(schema)}`)
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    )
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')
    const current = rows[0]?.v ?? 0
    if (current > known) {
      throw new SluiceError(
        'SLUICE_ERR_STORE_SCHEMA_NEWER',
        `the PostgreSQL store (schema ${schema}) is at version ${current}, newer than this sluice knows (${known}); run the newer sluice`,
        { context: { path: 'store.url' } },
      )
    }
    const applied: number[] = []
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (m.version <= current) continue
      try {
        await client.query(m.sql)
      } catch (e) {
        throw new SluiceError('SLUICE_ERR_STORE_MIGRATION', `migration ${m.version} (${m.name}) of the PostgreSQL store failed: ${(e as Error).message}`, {
          cause: e,
        })
      }
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
      applied.push(m.version)
    }
    await client.query('COMMIT')
    if (applied.length > 0) log.info({ schema, from: current, to: known, applied }, 'store schema migrated')
    return { version: Math.max(current, known), applied }
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw e
  }
}
