/**
 * Lints the Dockerfile without a Docker engine (none runs here, so the image is not built in
 * tests): parses its instructions and checks what the deployment relies on. Base images pinned
 * to a Node major, a non-root user, an exec-form ENTRYPOINT that runs node itself (so SIGTERM
 * reaches the gateway), a HEALTHCHECK on /admin/health, production dependencies only in the
 * runtime stage, and COPY sources that exist and that .dockerignore does not drop.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')

interface Instruction {
  op: string
  args: string
  line: number
}

interface Stage {
  from: string
  name?: string
  steps: Instruction[]
}

/** Instructions with continuation lines joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending: { text: string; line: number } | undefined
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (pending === undefined && (line === '' || line.startsWith('#'))) return
    if (pending !== undefined && line.startsWith('#')) return
    const text = pending ? `${pending.text} ${line}` : line
    const start = pending?.line ?? i + 1
    if (text.endsWith('\\')) {
      pending = { text: text.slice(0, -1).trim(), line: start }
      return
    }
    pending = undefined
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(text)
    if (m) out.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start })
  })
  return out
}

function stages(instructions: Instruction[]): Stage[] {
  const list: Stage[] = []
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const [image, as, name] = ins.args.split(/\s+/)
      list.push({ from: image as string, ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), steps: [] })
    } else list.at(-1)?.steps.push(ins)
  }
  return list
}

/** The JSON array of an exec-form instruction, or undefined for shell form. */
function execForm(args: string): string[] | undefined {
  try {
    const v = JSON.parse(args) as unknown
    return Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : undefined
  } catch {
    return undefined
  }
}

/** .dockerignore patterns (the subset used: names and globs of whole path segments). */
function ignored(path: string, patterns: string[]): boolean {
  const re = (p: string) =>
    new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '\0')
        .replace(/\*/g, '[^/]*')
        .replace(/\0/g, '(.*/)?')}(/.*)?$`,
    )
  return patterns.some((p) => re(p).test(path))
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const instructions = parseDockerfile(dockerfile)
const all = stages(instructions)
const runtime = all.at(-1) as Stage
const step = (s: Stage, op: string) => s.steps.filter((i) => i.op === op)

describe('Dockerfile', () => {
  it('builds in stages from Node 20 slim images pinned to the major version', () => {
    expect(all.map((s) => s.name)).toEqual(['build', 'deps', 'runtime'])
    for (const s of all) expect(s.from).toMatch(/^node:20-[a-z]+-slim$/)
  })

  it('runs as a non-root user in the runtime stage', () => {
    const users = step(runtime, 'USER').map((u) => u.args)
    expect(users.length).toBeGreaterThan(0)
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/)
  })

  it('starts node directly with an exec-form ENTRYPOINT, so SIGTERM reaches the gateway', () => {
    const [entry, ...more] = step(runtime, 'ENTRYPOINT')
    expect(more).toEqual([])
    const argv = execForm(entry?.args ?? '')
    expect(argv, 'exec form (a JSON array): shell form puts /bin/sh between the signal and node').toBeDefined()
    expect(argv?.slice(0, 3)).toEqual(['node', '--max-semi-space-size=64', 'bin/sluice.js'])
    expect(argv).not.toContain('npm')
    expect(execForm(step(runtime, 'CMD')[0]?.args ?? '')).toEqual(['start', '--config', '/etc/sluice/gateway.yaml'])
  })

  it('checks /admin/health with node (slim images have no curl)', () => {
    const [health] = step(runtime, 'HEALTHCHECK')
    expect(health?.args).toMatch(/^--interval=\S+ --timeout=\S+ .*CMD \[/)
    const argv = execForm(health?.args.slice(health.args.indexOf('CMD') + 4) ?? '')
    expect(argv?.[0]).toBe('node')
    expect(argv?.join(' ')).toContain("path:'/admin/health'")
    expect(argv?.join(' ')).toContain('SLUICE_ADMIN_KEY')
  })

  it('installs production dependencies with the native build tools in their own stage', () => {
    const deps = all.find((s) => s.name === 'deps') as Stage
    const runs = step(deps, 'RUN')
      .map((r) => r.args)
      .join('\n')
    expect(runs).toMatch(/npm ci --omit=dev/)
    expect(runs).toMatch(/g\+\+/)
    expect(runs).toMatch(/npm rebuild better-sqlite3 isolated-vm/)
    const build = all.find((s) => s.name === 'build') as Stage
    expect(step(build, 'RUN').map((r) => r.args)).toContain('npm run build')
    const copies = step(runtime, 'COPY').map((c) => c.args)
    expect(copies).toContainEqual(expect.stringMatching(/^--from=deps .*\/app\/node_modules \.\/node_modules$/))
    expect(copies).toContainEqual(expect.stringMatching(/^--from=build .*\/app\/dist \.\/dist$/))
    expect(
      step(runtime, 'RUN')
        .map((r) => r.args)
        .join('\n'),
    ).not.toMatch(/npm (ci|install)/)
  })

  it('copies only sources that exist and that .dockerignore keeps in the build context', () => {
    const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
    expect(patterns).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git', '.sluice']))
    const sources = instructions
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      )
    expect(sources.length).toBeGreaterThan(5)
    for (const src of sources) {
      expect(existsSync(join(ROOT, src)), `${src} exists`).toBe(true)
      expect(ignored(src, patterns), `${src} is not in .dockerignore`).toBe(false)
    }
    // The check itself: an ignored path is recognised.
    expect(ignored('node_modules/x', patterns)).toBe(true)
    expect(ignored('a/b/state.db', patterns)).toBe(true)
  })
})
