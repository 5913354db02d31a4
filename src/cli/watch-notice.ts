/**
 * `sluice start` without --watch: a function file or the config changed on disk, and the running
 * gateway keeps the code and settings it loaded until a reload (SIGHUP, POST /admin/reload). This
 * says so in the log instead of letting an edit change nothing, silently.
 */
import { createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname, isAbsolute, join, sep } from 'node:path'
import type { Pino } from '../log.js'
import { displayPath } from '../config/paths.js'
import type { GatewayConfig } from '../config/schema.js'

/** What to do about a change (sluice start without --watch). */
const RELOAD_HINT = 'reload it (send SIGHUP to the gateway, or POST /admin/reload), or run sluice start --watch to reload on every change'

/** Editors write a file in several steps (truncate, write, rename): one notice per burst. */
const DEBOUNCE_MS = 300

const digest = (file: string): string | undefined => {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex')
  } catch {
    return undefined
  }
}

/**
 * Watches the function files (with `compiled`, every project file their bundles were built from,
 * outside node_modules) and the config file of `config`, and logs a warning when one changes (by
 * content, not by mere touch). Watches folders, not files, so a file replaced by a rename (as
 * editors save) is still seen. Never keeps the process alive; `close` stops watching (idempotent).
 */
export function watchSources(
  config: GatewayConfig,
  log: Pino,
  opts: { debounceMs?: number; compiled?: ReadonlyMap<string, { inputs?: readonly string[] }> } = {},
): { close(): void } {
  // File -> the functions whose bundles include it ([] for the config file).
  const files = new Map<string, string[]>()
  const add = (file: string, fn: string) => files.set(file, [...new Set([...(files.get(file) ?? []), fn])])
  for (const fn of Object.values(config.functions)) {
    add(fn.codePath, fn.name)
    for (const input of opts.compiled?.get(fn.name)?.inputs ?? []) {
      if (isAbsolute(input) && !input.split(sep).includes('node_modules')) add(input, fn.name)
    }
  }
  const entries = new Set(Object.values(config.functions).map((f) => f.codePath))
  if (config.file) files.set(config.file, files.get(config.file) ?? [])
  const known = new Map([...files.keys()].map((f) => [f, digest(f)]))
  const timers = new Map<string, NodeJS.Timeout>()
  const watchers: FSWatcher[] = []
  let closed = false

  const changed = (file: string) => {
    const now = digest(file)
    if (now === known.get(file)) return
    known.set(file, now)
    const shown = displayPath(config.root, file)
    const fns = files.get(file) ?? []
    if (fns.length === 0) {
      log.warn({ file: shown }, `configuration ${shown} changed on disk; the gateway keeps running the configuration it loaded: ${RELOAD_HINT}`)
      return
    }
    const what = entries.has(file) ? `function file ${shown}` : `file ${shown}, bundled into ${fns.length === 1 ? 'function' : 'functions'} ${fns.join(', ')},`
    for (const name of fns) {
      log.warn(
        { function: name, file: shown },
        now === undefined
          ? `${what} was removed; the gateway keeps running the code it loaded`
          : `${what} changed; the gateway keeps running the code it loaded: ${RELOAD_HINT}`,
      )
    }
  }

  const byDir = new Map<string, Set<string>>()
  for (const f of files.keys()) byDir.set(dirname(f), (byDir.get(dirname(f)) ?? new Set()).add(basename(f)))
  for (const [dir, names] of byDir) {
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (closed || name === null || !names.has(name.toString())) return
        const file = join(dir, name.toString())
        clearTimeout(timers.get(file))
        const t = setTimeout(() => {
          timers.delete(file)
          if (!closed) changed(file)
        }, opts.debounceMs ?? DEBOUNCE_MS)
        t.unref()
        timers.set(file, t)
      })
      w.on('error', (err) => log.debug({ err, dir }, 'cannot watch a folder for changed function files'))
      watchers.push(w)
    } catch (err) {
      // A folder that cannot be watched (inotify limits, a network file system): no notice, no harm.
      log.debug({ err, dir }, 'cannot watch a folder for changed function files')
    }
  }
  return {
    close() {
      if (closed) return
      closed = true
      for (const t of timers.values()) clearTimeout(t)
      timers.clear()
      for (const w of watchers) w.close()
    },
  }
}
