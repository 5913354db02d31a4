/**
 * How a timer tick runs once across gateway instances sharing a store: the instance that acquires
 * the tick's lease runs it and renews the lease while the run goes on; the others watch the lease
 * and take the tick over (attempt + 1) if it expires before the run's outcome is recorded.
 */
import type { ConnectorState, Lease, Logger } from '../../src/sdk/index.js'

/** How long a finished tick stays claimed, so late or restarted instances never run it again. */
export const FINISHED_RETAIN_MS = 3600 * 1000
/** A watcher stops waiting for another instance's tick after this long. */
const WATCH_LIMIT_MS = FINISHED_RETAIN_MS / 2
const STORE_RETRY_FIRST_MS = 250
const STORE_RETRY_MAX_MS = 5000

/** Sleeps `ms`, or less when `signal` aborts; resolves false when aborted. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false)
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve(!signal.aborted)
    }
    const t = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * Renews `lease` every third of `ttlMs` until `stop()` is called. A renewal that fails (store
 * down) is tried again at the next interval; one that finds the lease gone is logged: another
 * instance may run the tick too (the store was unreachable for longer than the lease).
 */
export function keepRenewed(state: ConnectorState, lease: Lease, ttlMs: number, log: Logger): { stop(): void } {
  let lost = false
  const timer = setInterval(
    () => {
      state.renewLease(lease, ttlMs).then(
        (ok) => {
          if (!ok && !lost) {
            lost = true
            log.warn({ lease: lease.key }, 'timer lease lost while the tick runs; another instance may take the tick over')
          }
        },
        (e: unknown) => log.warn({ lease: lease.key, err: (e as Error).message }, 'cannot renew the timer lease; retrying'),
      )
    },
    Math.max(100, Math.floor(ttlMs / 3)),
  )
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

/**
 * Records the tick's outcome by finishing its lease (or releasing it when the run was aborted),
 * retrying while the store is unavailable until it lands or `signal` aborts (the lease then
 * expires and another instance runs the tick again: at least once).
 */
export async function settleLease(state: ConnectorState, lease: Lease, how: 'finish' | 'release', signal: AbortSignal, log: Logger): Promise<void> {
  let delay = STORE_RETRY_FIRST_MS
  for (;;) {
    try {
      const ok = how === 'finish' ? await state.finishLease(lease, FINISHED_RETAIN_MS) : await state.releaseLease(lease)
      if (!ok) log.warn({ lease: lease.key }, `timer lease was lost before the tick could be marked ${how === 'finish' ? 'done' : 'released'}`)
      return
    } catch (e) {
      log.error({ lease: lease.key, err: (e as Error).message }, `cannot ${how} the timer lease; retrying`)
      // A release is worth one try only during shutdown; the lease expires by itself anyway.
      if (how === 'release' || !(await sleep(delay, signal))) return
      delay = Math.min(delay * 2, STORE_RETRY_MAX_MS)
    }
  }
}

export type Acquired = { lease: Lease } | { finished: true } | { aborted: true }

/**
 * Waits until this instance can take `key`: when its holder's lease runs out (the holder died) or
 * is released, or when the store is back after an error. Gives up when the tick is finished, on
 * abort, or after WATCH_LIMIT_MS. `first` is the answer (or error) of the first attempt.
 */
export async function watchLease(state: ConnectorState, key: string, ttlMs: number, signal: AbortSignal, retryInMs: number, log: Logger): Promise<Acquired> {
  const until = Date.now() + WATCH_LIMIT_MS
  let wait = retryInMs
  let storeDelay = STORE_RETRY_FIRST_MS
  while (Date.now() < until) {
    // Jitter spreads the watchers of one tick so they do not all ask at the same moment.
    if (!(await sleep(Math.min(Math.max(wait, 50), ttlMs) + Math.random() * 100, signal))) return { aborted: true }
    try {
      const r = await state.acquireLease(key, ttlMs)
      if (r.acquired) return { lease: r.lease }
      if (r.finished) return { finished: true }
      wait = r.retryInMs
      storeDelay = STORE_RETRY_FIRST_MS
    } catch (e) {
      log.warn({ lease: key, err: (e as Error).message }, 'cannot acquire the timer lease; retrying')
      wait = storeDelay
      storeDelay = Math.min(storeDelay * 2, STORE_RETRY_MAX_MS)
    }
  }
  return { aborted: true }
}
