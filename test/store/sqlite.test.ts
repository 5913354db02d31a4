/** The Store contract against SQLite: a fresh file per test, two store objects on it for two instances. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onTestFinished } from 'vitest'
import { SqliteStore } from '../../src/store/sqlite.js'
import { storeContract } from './contract.js'

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-store-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return { open: async () => new SqliteStore(join(dir, 'state.db')) }
})
