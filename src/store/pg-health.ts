/**
 * Tracks whether the PostgreSQL server answers. A query that fails for connection reasons marks
 * the store down; from then a probe (`SELECT 1`) runs with exponential backoff (250 ms doubling to
 * 5 s) until one succeeds. node-postgres opens new connections on demand, so "reconnecting" is the
 * pool replacing its broken clients on the next checkout; the probe only decides when to say up.
 */
import type { Pool } from 'pg'
import type { Logger } from '../sdk/index.js'
import type { StoreHealth } from './store.js'

const FIRST_BACKOFF_MS = 250
const MAX_BACKOFF_MS = 5000

export class PgHealth {
  private state: StoreHealth = { kind: 'postgres', up: true, since: new Date().toISOString() }
  private probe: NodeJS.Timeout | undefined
  private backoff = FIRST_BACKOFF_MS
  private closed = false

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
  ) {}

  get(): StoreHealth {
    return { ...this.state }
  }

  markUp(): void {
    if (this.state.up) return
    this.state = { kind: 'postgres', up: true, since: new Date().toISOString() }
    this.backoff = FIRST_BACKOFF_MS
    this.log.info({ store: 'postgres' }, 'store reachable again')
  }

  markDown(reason: string): void {
    if (this.closed) return
    if (this.state.up) {
      this.state = { kind: 'postgres', up: false, detail: reason, since: new Date().toISOString() }
      this.log.error({ store: 'postgres', reason }, 'store unavailable; nothing that needs it is acknowledged until it is back')
    } else this.state.detail = reason
    this.schedule()
  }

  private schedule(): void {
    if (this.probe || this.closed) return
    const delay = this.backoff
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS)
    this.probe = setTimeout(() => {
      this.pool.query('SELECT 1').then(
        () => {
          this.probe = undefined
          this.markUp()
        },
        (e: unknown) => {
          this.probe = undefined
          this.markDown((e as Error).message)
        },
      )
    }, delay)
    this.probe.unref()
  }

  close(): void {
    this.closed = true
    if (this.probe) clearTimeout(this.probe)
    this.probe = undefined
  }
}
