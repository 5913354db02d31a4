/**
 * How tests start the `sluice` command in a child process. `npm test` builds first, so the child
 * runs the built JavaScript (dist/) when that build is newer than every source file: a gateway
 * process then starts without transpiling the sources again, which on two busy cores saves
 * several seconds of CPU per start. Otherwise (a test run by hand after an edit) it runs the
 * TypeScript sources through tsx, so the child always runs the code under test.
 */
import { readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..')
// Resolved from here: a gateway folder outside the repository (a temp dir) has no node_modules.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href

function newest(dir: string): number {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue
    const p = join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs)
  }
  return t
}

function mtime(p: string): number {
  try {
    return statSync(p).mtimeMs
  } catch {
    return 0
  }
}

let cached: string[] | undefined

/** Node arguments that run `sluice` (append the command and its options). */
export function sluiceArgs(): string[] {
  if (cached) return [...cached]
  const built = Math.min(mtime(join(ROOT, 'dist/.build-stamp')), mtime(join(ROOT, 'dist/src/cli/bin.js')))
  const sources = Math.max(...['src', 'connectors', 'templates'].map((d) => newest(join(ROOT, d))))
  cached = built > 0 && built >= sources ? [join(ROOT, 'dist/src/cli/bin.js')] : ['--import', TSX, join(ROOT, 'src/cli/bin.ts')]
  return [...cached]
}
