/** The project root and how paths are shown in messages. */
import { existsSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'

/** The nearest folder at or above `dir` that holds a package.json; `dir` itself when none does. */
export function findProjectRoot(dir: string): string {
  let at = resolve(dir)
  for (;;) {
    if (existsSync(join(at, 'package.json'))) return at
    const up = dirname(at)
    if (up === at) return resolve(dir)
    at = up
  }
}

/** `path` as messages show it: relative to `root` when inside it, else absolute. */
export function displayPath(root: string, path: string): string {
  const rel = relative(root, path)
  return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel) ? path : rel
}
