import type { Lease, LeaseAttempt } from '../sdk/index.js'
import type { Store } from './store.js'

export type LeaseEnd = 'finish' | 'release'

/**
 * Runs `work` while holding the lease on `key` (renewed every third of `ttlMs`), then finishes the
 * lease (kept from everyone for `retainMs`) or releases it, as `work` says. Resolves with the
 * refusal when another holder has the key. A failed renewal is left to the next interval; the
 * final finish/release is best effort (an unreleased lease expires by itself).
 */
export async function withLease<T>(
  store: Store,
  key: string,
  owner: string,
  opts: { ttlMs: number; retainMs: number },
  work: (lease: Lease) => Promise<{ value: T; end: LeaseEnd }>,
): Promise<{ ran: true; value: T } | { ran: false; refused: Extract<LeaseAttempt, { acquired: false }> }> {
  const got = await store.acquireLease(key, owner, opts.ttlMs)
  if (!got.acquired) return { ran: false, refused: got }
  const lease = got.lease
  const timer = setInterval(() => void store.renewLease(lease, opts.ttlMs).catch(() => undefined), Math.max(100, Math.floor(opts.ttlMs / 3)))
  timer.unref()
  let end: LeaseEnd = 'release'
  try {
    const r = await work(lease)
    end = r.end
    return { ran: true, value: r.value }
  } finally {
    clearInterval(timer)
    await (end === 'finish' ? store.finishLease(lease, opts.retainMs) : store.releaseLease(lease)).catch(() => undefined)
  }
}
