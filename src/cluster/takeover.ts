/**
 * Takeover of dead instances' broker sessions. At each heartbeat the member hands the registry
 * rows here; for an instance that is dead (heartbeat older than instance.expiryMs, or stopped)
 * and still has recorded sessions, one live instance (the holder of a lease in the store) drains
 * the sessions it has the function for, then records in the dead instance's row what it took.
 * A failed drain releases the lease: the next heartbeat (here or on another instance) tries again.
 */
import { toInfo } from '../errors.js'
import type { Logger, TakeoverReport } from '../sdk/index.js'
import type { InstanceRow, Store } from '../store/store.js'
import { withLease } from '../store/with-lease.js'
import type { InstanceReport, RecordedSession } from './types.js'

/** Drains one session, or undefined when this instance cannot (the function is not configured here). */
export type SessionDrainer = (s: RecordedSession) => ((signal: AbortSignal) => Promise<TakeoverReport>) | undefined

/** The lease on one dead incarnation's sessions. */
export const takeoverLeaseKey = (id: string, incarnation: string): string => `cluster:takeover:${id}:${incarnation}`
const LEASE = { ttlMs: 30_000, retainMs: 30_000 }

/** True when `row` (not this instance) is dead and holds sessions nobody took over yet. */
export function needsTakeover(row: InstanceRow, selfId: string, expiryMs: number): boolean {
  const doc = row.doc as Partial<InstanceReport>
  if (row.id === selfId || !Array.isArray(doc.sessions) || doc.sessions.length === 0) return false
  return row.ageMs > expiryMs || doc.state === 'stopped'
}

export class TakeoverCoordinator {
  private running: Promise<void> | undefined
  private readonly abort = new AbortController()

  constructor(private readonly d: { store: Store; selfId: string; incarnation: string; expiryMs: number; log: Logger; drainer: SessionDrainer }) {}

  /** Starts draining the first dead instance found in `rows`, unless a drain runs already. */
  consider(rows: readonly InstanceRow[]): void {
    if (this.running || this.abort.signal.aborted) return
    for (const row of rows) {
      if (!needsTakeover(row, this.d.selfId, this.d.expiryMs)) continue
      const sessions = (row.doc as InstanceReport).sessions
      if (!sessions.some((s) => this.d.drainer(s) !== undefined)) continue
      this.running = this.run(row).finally(() => (this.running = undefined))
      return
    }
  }

  private async run(row: InstanceRow): Promise<void> {
    const { store, log } = this.d
    const doc = row.doc as InstanceReport
    const owner = `${this.d.selfId}/${this.d.incarnation}`
    try {
      const r = await withLease(store, takeoverLeaseKey(row.id, row.incarnation), owner, LEASE, async () => {
        const remaining: RecordedSession[] = []
        let messages = 0
        let taken = 0
        let failed = false
        for (const s of doc.sessions) {
          const drain = this.d.drainer(s)
          if (!drain || failed || this.abort.signal.aborted) {
            remaining.push(s)
            continue
          }
          const fields = { instance: row.id, function: s.function, ...(s.connection ? { connection: s.connection } : {}), clientId: s.clientId }
          try {
            log.info(fields, 'taking over the session of a dead instance')
            const rep = await drain(this.abort.signal)
            messages += rep.messages
            taken++
            log.info({ ...fields, messages: rep.messages, sessionPresent: rep.sessionPresent }, 'session of a dead instance drained and ended')
          } catch (e) {
            failed = true
            remaining.push(s)
            const err = toInfo(e, 'SLUICE_ERR_CLUSTER_TAKEOVER_FAILED')
            log.error({ ...fields, err: { code: err.code, message: err.message } }, 'session takeover failed; it is tried again at a later heartbeat')
          }
        }
        if (taken > 0) {
          const prev = doc.takenOver
          const takenOver = {
            by: this.d.selfId,
            at: new Date().toISOString(),
            sessions: (prev?.sessions ?? 0) + taken,
            messages: (prev?.messages ?? 0) + messages,
          }
          await store.updateInstance(row.id, row.incarnation, { ...doc, sessions: remaining, takenOver })
        }
        return { value: undefined, end: failed ? 'release' : 'finish' }
      })
      if (!r.ran) log.debug({ instance: row.id, holder: r.refused.owner }, 'another instance takes over this one')
    } catch (e) {
      const err = toInfo(e, 'SLUICE_ERR_STORE_DOWN')
      log.warn({ instance: row.id, err: { code: err.code, message: err.message } }, 'session takeover could not run; tried again at a later heartbeat')
    }
  }

  /** Aborts a drain in flight (its unacknowledged messages stay in the session) and waits for it. */
  async stop(): Promise<void> {
    this.abort.abort()
    await this.running
  }
}
