// `npm start` runs this first: builds (npm run build) when dist/ is missing or older than the
// sources it is built from (src/, connectors/, ui/), so a fresh checkout or a pull just works.
// `npm run build` ends with `--stamp`, which records when the build finished.
import { execSync } from 'node:child_process'
import { readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const STAMP = join(root, 'dist', '.build-stamp')

if (process.argv.includes('--stamp')) {
  writeFileSync(STAMP, `${new Date().toISOString()}\n`)
  process.exit(0)
}

function newest(dir) {
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue
    const p = join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs)
  }
  return t
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs
  } catch {
    return 0
  }
}

const built = Math.min(mtime(STAMP), mtime(join(root, 'dist/src/index.js')), mtime(join(root, 'dist/ui/index.html')))
const sources = Math.max(...['src', 'connectors', 'ui'].map((d) => newest(join(root, d))))
if (built === 0 || sources > built) {
  process.stdout.write(built === 0 ? 'sluice is not built yet: npm run build\n' : 'sources changed since the last build: npm run build\n')
  execSync('npm run build', { cwd: root, stdio: 'inherit' })
}
