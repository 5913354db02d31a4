/**
 * `sluice validate --typecheck`: type-checks the function files with the project's own TypeScript
 * (bundling with esbuild strips types without checking them). Runs the project's `tsc --noEmit`
 * on a generated tsconfig that lists only the function files and extends the tsconfig.json
 * nearest to them when there is one, so the project's compiler options and types apply.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { displayPath } from '../config/paths.js'
import { SluiceError } from '../errors.js'

export interface TypeIssue {
  /** As messages show it: relative to the project root when inside it. */
  file: string
  line: number
  col: number
  /** The TypeScript diagnostic, e.g. "TS2322: Type 'string' is not assignable to type 'number'." */
  message: string
}

export interface TypecheckResult {
  /** The TypeScript version that checked. */
  version: string
  /** Files checked (as shown in messages); .js files are bundled but not type-checked. */
  files: string[]
  issues: TypeIssue[]
}

const TS_FILE = /\.(ts|tsx|mts|cts)$/

/** Without a project tsconfig.json: what the sandbox offers (ES2022, no DOM, no Node types). */
const DEFAULT_OPTIONS = {
  strict: true,
  target: 'ES2022',
  lib: ['ES2022'],
  module: 'ESNext',
  moduleResolution: 'Bundler',
  types: [],
  skipLibCheck: true,
  allowImportingTsExtensions: true,
}

/** The project's TypeScript compiler: its version and the path of its tsc script. */
function findTypescript(root: string): { version: string; tsc: string } {
  let pkgPath: string
  try {
    pkgPath = createRequire(join(root, 'package.json')).resolve('typescript/package.json')
  } catch {
    throw new SluiceError(
      'SLUICE_ERR_CLI_TYPESCRIPT_MISSING',
      `--typecheck uses the project's own TypeScript, and none is installed for ${root}: run npm install --save-dev typescript there, then sluice validate --typecheck again`,
    )
  }
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: string; bin?: string | Record<string, string> }
  const bin = typeof pkg.bin === 'string' ? pkg.bin : (pkg.bin?.tsc ?? 'bin/tsc')
  return { version: pkg.version ?? 'unknown', tsc: resolve(dirname(pkgPath), bin) }
}

/** Parses `tsc --pretty false` output: `file(line,col): error TSnnnn: message` plus indented continuation lines. */
function parseDiagnostics(output: string, root: string): TypeIssue[] {
  const issues: TypeIssue[] = []
  for (const line of output.split('\n')) {
    const m = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line)
    if (m) {
      issues.push({ file: displayPath(root, resolve(root, m[1] as string)), line: Number(m[2]), col: Number(m[3]), message: `${m[4]}: ${m[5]}` })
      continue
    }
    const last = issues[issues.length - 1]
    if (last && /^\s+\S/.test(line)) last.message += `\n    ${line.trim()}`
    else if (/error TS\d+:/.test(line)) issues.push({ file: '', line: 0, col: 0, message: line.replace(/^error /, '').trim() })
  }
  return issues
}

/** The tsconfig.json nearest to `file`, looking in its folder and upwards, not above `root`. */
function nearestTsconfig(file: string, root: string): string | undefined {
  let dir = dirname(file)
  for (;;) {
    const candidate = join(dir, 'tsconfig.json')
    if (existsSync(candidate)) return candidate
    const up = dirname(dir)
    if (dir === root || up === dir || !isInside(root, up)) return undefined
    dir = up
  }
}

function isInside(root: string, dir: string): boolean {
  const rel = relative(root, dir)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}

/** Runs the project's tsc on a generated tsconfig (extending `base` when given) that lists `files`. */
async function runTsc(ts: { version: string; tsc: string }, root: string, base: string | undefined, files: string[], n: number): Promise<TypeIssue[]> {
  // The generated tsconfig lives under the project (in .sluice/, the state folder), so
  // node_modules/@types resolve as they do for the project.
  const dir = join(root, '.sluice')
  mkdirSync(dir, { recursive: true })
  const configPath = join(dir, `tsconfig.typecheck-${process.pid}-${n}.json`)
  const overrides = { noEmit: true, composite: false, incremental: false }
  const tsconfig = base
    ? { extends: base, compilerOptions: overrides, files, include: [] }
    : { compilerOptions: { ...DEFAULT_OPTIONS, ...overrides }, files, include: [] }
  writeFileSync(configPath, JSON.stringify(tsconfig, null, 2))
  try {
    const output = await new Promise<{ code: number; text: string }>((done, fail) => {
      execFile(
        process.execPath,
        [ts.tsc, '-p', configPath, '--pretty', 'false'],
        { cwd: root, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
          if (code === -1)
            fail(new SluiceError('SLUICE_ERR_FUNCTION_TYPE', `TypeScript ${ts.version} (${ts.tsc}) did not run: ${err?.message ?? 'unknown error'}`))
          else done({ code, text: `${stdout}\n${stderr}` })
        },
      )
    })
    const issues = parseDiagnostics(output.text, root)
    if (output.code !== 0 && issues.length === 0)
      issues.push({ file: '', line: 0, col: 0, message: output.text.trim() || `tsc exited with code ${output.code}` })
    return issues
  } finally {
    rmSync(configPath, { force: true })
  }
}

/**
 * Type-checks `files` (absolute paths; .js files are skipped) under project `root`, each with the
 * compiler options of its nearest tsconfig.json (in its folder or above, up to the root; the
 * defaults above without one). Throws SLUICE_ERR_CLI_TYPESCRIPT_MISSING when the project has no
 * TypeScript installed.
 */
export async function typecheck(root: string, files: readonly string[]): Promise<TypecheckResult> {
  const tsFiles = [...new Set(files.filter((f) => TS_FILE.test(f)))]
  const ts = findTypescript(root)
  const groups = new Map<string, string[]>()
  for (const f of tsFiles) {
    const base = nearestTsconfig(f, root) ?? ''
    groups.set(base, [...(groups.get(base) ?? []), f])
  }
  const issues: TypeIssue[] = []
  let n = 0
  for (const [base, list] of groups) issues.push(...(await runTsc(ts, root, base || undefined, list, n++)))
  return { version: ts.version, files: tsFiles.map((f) => displayPath(root, f)), issues }
}
