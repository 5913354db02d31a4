/**
 * `sluice validate` as users run it (node bin/sluice.js, the build in dist/): paths that mean the
 * same from any current directory, a report of what was checked, and --typecheck with the
 * project's own TypeScript.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { projectDir } from '../helpers/gateway.js'

const BIN = resolve('bin/sluice.js')
const TYPESCRIPT = resolve('node_modules/typescript')

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function folder(files: Record<string, string>): string {
  const p = projectDir(files)
  cleanups.push(p.cleanup)
  return p.dir
}

const run = (args: string[], cwd: string) => spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 120_000 })

const YAML = `store: { path: .sluice/state.db }
functions:
  orders:
    code: functions/orders.ts
    trigger: { http: { route: "orders/{id}", auth: anonymous } }
`
const GOOD = 'export default async (events: Array<{ body: unknown }>) => ({ count: events.length })\n'
const BAD_TYPES = 'export default async (events: unknown[]) => {\n  const n: number = "x"\n  return n + events.length\n}\n'

/** The project's own TypeScript, installed as npm would: node_modules/typescript. */
function installTypescript(dir: string): void {
  mkdirSync(join(dir, 'node_modules'), { recursive: true })
  symlinkSync(TYPESCRIPT, join(dir, 'node_modules/typescript'), 'dir')
}

describe('sluice validate', () => {
  it('resolves code: against the project root, whatever the current directory, and says which root', () => {
    const project = folder({ 'package.json': '{"name":"shop"}', 'config/gateway.yaml': YAML, 'functions/orders.ts': GOOD })
    const elsewhere = folder({ 'functions/orders.ts': 'this is another project: not the one to bundle' })
    const r = run(['validate', '--config', join(project, 'config/gateway.yaml')], elsewhere)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`  project root: ${project} (relative paths in the config start here)`)
    expect(r.stdout).toContain('  orders: http trigger, functions/orders.ts')
  })

  it('shows paths in errors relative to the project root, not climbing out of the current directory', () => {
    const project = folder({ 'package.json': '{}', 'config/gateway.yaml': YAML })
    const r = run(['validate', '--config', join(project, 'config/gateway.yaml')], folder({}))
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(
      `config/gateway.yaml:4:11 functions.orders.code function code file not found: functions/orders.ts (relative paths start at the project root ${project}) [SLUICE_ERR_FUNCTION_NOT_FOUND]`,
    )
    expect(r.stderr).not.toContain('../')
  })

  it('says what it checked, and that types are not checked without --typecheck', () => {
    const project = folder({ 'gateway.yaml': YAML, 'functions/orders.ts': BAD_TYPES })
    const r = run(['validate', '--config', 'gateway.yaml'], project)
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('  checked: the config against its schema; the connections, routes and schedules it names;')
    expect(r.stdout).toContain('1 function bundled (syntax, imports, default export)')
    expect(r.stdout).toContain('  not checked: TypeScript types (run sluice validate --typecheck)')
    const json = JSON.parse(run(['validate', '--config', 'gateway.yaml', '--json'], project).stdout) as Record<string, unknown>
    expect(json).toMatchObject({ ok: true, root: project, checked: { schema: true, references: true, bundled: 1, types: false } })
  })

  it('--typecheck without TypeScript in the project says how to install it and exits 1', () => {
    const project = folder({ 'package.json': '{}', 'gateway.yaml': YAML, 'functions/orders.ts': GOOD })
    const r = run(['validate', '--config', 'gateway.yaml', '--typecheck'], project)
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('npm install --save-dev typescript')
    expect(r.stderr).toContain('[SLUICE_ERR_CLI_TYPESCRIPT_MISSING]')
  })

  it('--typecheck reports type errors at the function file with the project TypeScript, exits 1', () => {
    const project = folder({ 'package.json': '{}', 'gateway.yaml': YAML, 'functions/orders.ts': BAD_TYPES })
    installTypescript(project)
    const r = run(['validate', '--config', 'gateway.yaml', '--typecheck'], project)
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/^sluice: gateway\.yaml: 1 type error \(TypeScript \d+\.\d+\.\d+\):\n/)
    expect(r.stderr).toContain("  functions/orders.ts:2:9 TS2322: Type 'string' is not assignable to type 'number'. [SLUICE_ERR_FUNCTION_TYPE]")
    // The generated tsconfig is removed afterwards.
    expect(existsSync(join(project, '.sluice')) ? readdirSync(join(project, '.sluice')) : []).toEqual([])
  })

  it("--typecheck uses the project's tsconfig.json nearest to the function when there is one", () => {
    // Implicit any is an error under the default (strict) options and allowed by this project.
    const implicitAny = 'export default async (events) => events.length\n'
    const project = folder({
      'package.json': '{}',
      'tsconfig.json': JSON.stringify({ compilerOptions: { strict: false, target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', types: [] } }),
      'gateway.yaml': YAML,
      'functions/orders.ts': implicitAny,
    })
    installTypescript(project)
    const ok = run(['validate', '--config', 'gateway.yaml', '--typecheck'], project)
    expect(ok.stderr).toBe('')
    expect(ok.status).toBe(0)
    expect(ok.stdout).toMatch(/ {2}types: 1 TypeScript file checked with TypeScript \d+\.\d+\.\d+\n/)
    const strict = folder({ 'package.json': '{}', 'gateway.yaml': YAML, 'functions/orders.ts': implicitAny })
    installTypescript(strict)
    const failed = run(['validate', '--config', 'gateway.yaml', '--typecheck'], strict)
    expect(failed.status).toBe(1)
    expect(failed.stderr).toContain('functions/orders.ts:1:23 TS7006:')
    // The tsconfig.json nearest to the function wins (functions/ may have its own, without Node's types).
    const nested = folder({
      'package.json': '{}',
      'tsconfig.json': JSON.stringify({ compilerOptions: { strict: false, target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', types: [] } }),
      'functions/tsconfig.json': JSON.stringify({ extends: '../tsconfig.json', compilerOptions: { strict: true } }),
      'gateway.yaml': YAML,
      'functions/orders.ts': implicitAny,
    })
    installTypescript(nested)
    const nearest = run(['validate', '--config', 'gateway.yaml', '--typecheck'], nested)
    expect(nearest.status).toBe(1)
    expect(nearest.stderr).toContain('functions/orders.ts:1:23 TS7006:')
  })
})
