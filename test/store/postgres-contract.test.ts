/** The Store contract against the local PostgreSQL server: a fresh schema per test. */
import { PostgresStore } from '../../src/store/postgres.js'
import { storeContract } from './contract.js'
import { memoryLog, PG_URL, tempSchema } from './pg.js'

storeContract('postgres', async () => {
  const schema = tempSchema()
  return { open: () => PostgresStore.open({ url: PG_URL, schema, log: memoryLog(), poolMax: 4 }) }
})
