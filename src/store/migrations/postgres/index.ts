import init from './001_init.js'
import instances from './002_instances.js'

/** A numbered schema change; versions are 1, 2, 3... with no gaps, applied in order. */
export interface Migration {
  version: number
  name: string
  sql: string
}

/** Every PostgreSQL migration this build knows, oldest first. Append; never edit or renumber. */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'init', sql: init },
  { version: 2, name: 'instances', sql: instances },
]
