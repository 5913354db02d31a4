/**
 * `sluice start --watch`: watches the configuration file and every source file of the running
 * functions, and reloads the gateway when one changes (by content, not by a mere touch). The
 * watched set follows the gateway: after every reload (whatever asked for it) it is the gateway's
 * `sources()` again, so a file a function starts importing is watched from then on.
 */
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { displayPath } from '../config/paths.js'
import type { ReloadResult } from '../http/admin.js'
import type { Pino } from '../log.js'

/** Editors write a file in several steps (truncate, write, rename): one reload per burst. */
const DEBOUNCE_MS = 150

/** What the watcher needs of a gateway (Gateway implements it). */
export interface Reloadable {
  readonly config: { root: string }
  sources(): string[]
  reload(): Promise<ReloadResult>
  onReload(listener: (r: ReloadResult) => void): () => void
}

const digest = (file: string): string | undefined => {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex')
  } catch {
    return undefined
  }
}

/**
 * Starts watching `gw`'s sources; a change reloads it (one reload per burst of changes). Watches
 * folders, not files, so a file replaced by a rename (as editors save) is still seen. Never keeps
 * the process alive; `close` stops watching (idempotent).
 */
export function watchAndReload(gw: Reloadable, log: Pino, opts: { debounceMs?: number } = {}): { close(): void } {
  const known = new Map<string, string | undefined>()
  const dirs = new Map<string, { watcher: FSWatcher; names: Set<string> }>()
  const pending = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let closed = false

  const flush = () => {
    timer = undefined
    if (closed) return
    const changed = [...pending].filter((f) => {
      const now = digest(f)
      if (now === known.get(f)) return false
      known.set(f, now)
      return true
    })
    pending.clear()
    if (changed.length === 0) return
    log.info({ files: changed.map((f) => displayPath(gw.config.root, f)) }, 'source changed: reloading')
    // The result is logged by the gateway; the listener below follows its new sources.
    void gw.reload()
  }

  const onEvent = (dir: string, name: string | Buffer | null) => {
    if (closed || name === null) return
    const entry = dirs.get(dir)
    if (!entry?.names.has(name.toString())) return
    pending.add(join(dir, name.toString()))
    clearTimeout(timer)
    timer = setTimeout(flush, opts.debounceMs ?? DEBOUNCE_MS)
    timer.unref()
  }

  const follow = (files: string[]) => {
    const byDir = new Map<string, Set<string>>()
    for (const f of files) byDir.set(dirname(f), (byDir.get(dirname(f)) ?? new Set()).add(basename(f)))
    for (const f of files) if (!known.has(f)) known.set(f, digest(f))
    for (const f of [...known.keys()]) if (!files.includes(f)) known.delete(f)
    for (const [dir, entry] of dirs) {
      if (byDir.has(dir)) continue
      entry.watcher.close()
      dirs.delete(dir)
    }
    for (const [dir, names] of byDir) {
      const entry = dirs.get(dir)
      if (entry) {
        entry.names = names
        continue
      }
      try {
        const watcher = watch(dir, { persistent: false }, (_e, name) => onEvent(dir, name))
        watcher.on('error', (err) => log.warn({ err: err.message, dir }, 'cannot watch a folder of function sources; edits there are not reloaded'))
        dirs.set(dir, { watcher, names })
      } catch (err) {
        log.warn(
          { err: (err as Error).message, dir },
          'cannot watch a folder of function sources (inotify limit or network file system); edits there are not reloaded: send SIGHUP instead',
        )
      }
    }
  }

  follow(gw.sources())
  const unlisten = gw.onReload(() => {
    if (!closed) follow(gw.sources())
  })
  log.info({ files: known.size }, 'watching the configuration and function sources: a change reloads the gateway')
  return {
    close() {
      if (closed) return
      closed = true
      clearTimeout(timer)
      unlisten()
      for (const { watcher } of dirs.values()) watcher.close()
      dirs.clear()
    },
  }
}
