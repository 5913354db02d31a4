import { resolve } from 'node:path'
import type { GatewayConfig } from '../config/schema.js'
import { SluiceError } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import { PostgresStore } from './postgres.js'
import { SqliteStore } from './sqlite.js'
import type { Store } from './store.js'

/**
 * Opens the store `config.store` describes: SQLite at `store.path` (relative to the project root),
 * or PostgreSQL at `store.url`, connected and migrated. Rejects with a coded error naming the
 * store and the cause (SLUICE_ERR_STORE_URL, _UNREACHABLE, _AUTH, _DATABASE_MISSING,
 * _SCHEMA_NEWER, _MIGRATION, _OPEN); messages never contain the password.
 */
export async function openStore(config: Pick<GatewayConfig, 'store' | 'root'>, log: Logger): Promise<Store> {
  const s = config.store
  switch (s.kind) {
    case 'sqlite':
      return new SqliteStore(s.path === ':memory:' ? ':memory:' : resolve(config.root, s.path))
    case 'postgres':
      if (!s.url) throw new SluiceError('SLUICE_ERR_STORE_URL', 'store.kind is postgres but store.url is missing', { context: { path: 'store.url' } })
      return PostgresStore.open({
        url: s.url,
        ...(s.schema !== undefined ? { schema: s.schema } : {}),
        ...(s.pool?.max !== undefined ? { poolMax: s.pool.max } : {}),
        log: log.child({ component: 'store' }),
      })
    default:
      throw new SluiceError('SLUICE_ERR_STORE_UNAVAILABLE', `unknown store kind ${String((s as { kind: unknown }).kind)}: use sqlite or postgres`, {
        context: { path: 'store.kind' },
      })
  }
}
