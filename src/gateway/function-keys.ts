import type { Store } from '../store/store.js'

/** How long function-key digests are cached before the store is read again. */
const KEY_CACHE_MS = 10_000

/**
 * Function key digests per function, read from the store and cached for KEY_CACHE_MS (other
 * gateway instances sharing the store may change keys). Writers call `invalidate` after a change.
 */
export class FunctionKeyCache {
  /** Cached as the read itself so a write can invalidate it. */
  private readonly hashes = new Map<string, Promise<string[]>>()
  private readonly listeners = new Set<(fn: string) => void>()

  constructor(private readonly store: Store) {}

  get(fn: string): Promise<string[]> {
    let h = this.hashes.get(fn)
    if (!h) {
      // Caching the promise (not its value) means a read that began before a key write cannot
      // land in the cache after the write invalidated it, and keep a deleted key working.
      const p = this.store.functionKeyHashes(fn)
      h = p
      this.hashes.set(fn, p)
      const forget = () => this.hashes.get(fn) === p && this.hashes.delete(fn)
      p.catch(forget)
      setTimeout(forget, KEY_CACHE_MS).unref()
    }
    return h
  }

  invalidate(fn: string): void {
    this.hashes.delete(fn)
    for (const l of this.listeners) l(fn)
  }

  /** Calls `listener` after a key of a function changed here (see invalidate). */
  onInvalidate(listener: (fn: string) => void): void {
    this.listeners.add(listener)
  }
}
