/**
 * The local PostgreSQL server (127.0.0.1:5432, user postgres, trust auth) for store tests: each
 * test gets its own schema (unique name), dropped when the test ends.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { onTestFinished } from 'vitest'
import type { Logger } from '../../src/sdk/index.js'

export const PG_URL = process.env.SLUICE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** A unique lower-case identifier, e.g. for a schema or a database. */
export const uniqueName = (prefix: string): string => `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`

/** Runs one statement as the superuser on `url` (default: the postgres database). */
export async function admin<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = [], url = PG_URL): Promise<R[]> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query<R>(sql, params)).rows
  } finally {
    await c.end()
  }
}

/** A schema name no other test uses; the schema (if created) is dropped after the test. */
export function tempSchema(): string {
  const name = uniqueName('sluice_t')
  onTestFinished(async () => {
    await admin(`DROP SCHEMA IF EXISTS ${name} CASCADE`)
  })
  return name
}

/** A logger that keeps what it is given (tests assert on it) and prints nothing. */
export function memoryLog(): Logger & { lines: Array<{ level: string; obj: object; msg?: string }> } {
  const lines: Array<{ level: string; obj: object; msg?: string }> = []
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, ...(msg === undefined ? {} : { msg }) })
    }
  const log = { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log }
  return log
}
