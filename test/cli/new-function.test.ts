/**
 * `sluice new`: the config file keeps every byte it had (comments, spacing, quoting, blank lines);
 * only the new blocks are added, and the result validates for every trigger kind (with
 * placeholder connections that validate offline). The CLI runs from dist/ (npm test builds first).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parse } from 'yaml'
import { afterEach, describe, expect, it } from 'vitest'
import { addFunction } from '../../src/cli/new-function.js'
import { TRIGGER_KINDS } from '../../src/cli/templates.js'
import { projectDir } from '../helpers/gateway.js'

const BIN = resolve('bin/sluice.js')

/** Odd on purpose: extra spaces before comments, [GET] without padding, quotes, a nested block trigger. */
const CONFIG = `# Orders gateway
# yaml-language-server: $schema=../schema.json
http: { port: 0, host: 127.0.0.1 }
admin: { key: "\${ADMIN_KEY:-dev-admin-key-0123456789}" }   # three spaces before this comment
store: { kind: sqlite, path: .sluice/state.db }

connections:
  # the stations
  devices: { kind: mqtt, url: embedded, port: 0 }   # built-in broker

functions:
  # GET /api/stations/{id}
  station-status:
    code: functions/station-status.ts
    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }
    timeoutMs: 2000

  # nightly, at three
  report:
    code: 'functions/report.ts'
    trigger:
      timer:
        schedule: "0 0 3 * * *"   # 03:00
    retry: {maxAttempts: 3}
`

const FILES = {
  'package.json': '{ "name": "orders", "private": true }\n',
  'config/gateway.yaml': CONFIG,
  'functions/station-status.ts': 'export default async () => ({ status: 200 })\n',
  'functions/report.ts': 'export default async () => {}\n',
}

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function project(files: Record<string, string> = FILES): string {
  const p = projectDir(files)
  cleanups.push(p.cleanup)
  return p.dir
}

const sluice = (args: string[], cwd: string) => spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })

/**
 * The runs of lines in `after` that are not in `before`, checking that every line of `before` is
 * still there, unchanged and in order, and that nothing else changed.
 */
function insertedRuns(before: string, after: string): string[] {
  const b = before.split('\n')
  const a = after.split('\n')
  const runs: string[] = []
  let i = 0
  let run: string[] = []
  for (const line of a) {
    if (i < b.length && line === b[i]) {
      if (run.length) runs.push(run.join('\n'))
      run = []
      i++
    } else run.push(line)
  }
  if (run.length) runs.push(run.join('\n'))
  expect(i).toBe(b.length)
  return runs
}

type Config = { functions: Record<string, { code: string; trigger: Record<string, Record<string, unknown>> }>; connections: Record<string, { kind: string }> }

describe('sluice new', () => {
  for (const kind of TRIGGER_KINDS) {
    it(`adds a ${kind} function: only new blocks in the YAML, a typed file, and sluice validate passes`, () => {
      const dir = project()
      const name = `new-${kind}`
      const r = sluice(['new', name, '--trigger', kind], dir)
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
      expect(r.stdout).toContain(`Added function ${name} (${kind} trigger)`)

      const after = readFileSync(join(dir, 'config/gateway.yaml'), 'utf8')
      const runs = insertedRuns(CONFIG, after)
      const needsConnection = kind !== 'http' && kind !== 'timer' && kind !== 'mqtt'
      expect(runs).toHaveLength(needsConnection ? 2 : 1)
      const fnRun = runs.at(-1) ?? ''
      // A comment, the file's indentation, and a blank line before it as between the other functions.
      expect(fnRun).toMatch(new RegExp(`^\\n? {2}# .+\\n {2}${name}:\\n {4}code: functions/${name}\\.ts\\n {4}trigger: \\{ ${kind}: \\{ .+ \\} \\}\\n?$`))
      expect(after).toContain(`    retry: {maxAttempts: 3}\n\n  # `)
      if (needsConnection) expect(runs[0]).toMatch(new RegExp(`^ {2}# placeholder: .+\\n(?: {2}# .+\\n)? {2}${kind}: \\{ kind: ${kind}, .+ \\}$`))

      const config = parse(after) as Config
      const trigger = config.functions[name]?.trigger[kind]
      expect(trigger).toBeDefined()
      if (kind === 'mqtt') expect(trigger?.connection).toBe('devices')
      else if (needsConnection) {
        expect(trigger?.connection).toBe(kind)
        expect(config.connections[kind]?.kind).toBe(kind)
      }

      const code = readFileSync(join(dir, `functions/${name}.ts`), 'utf8')
      expect(code).toContain("from 'sluice/function'")
      expect(code).toMatch(/^const handler: Handler</m)

      const v = sluice(['validate'], dir)
      expect(v.stderr).toBe('')
      expect(v.status).toBe(0)
      expect(v.stdout).toContain(`${name}: ${kind} trigger, functions/${name}.ts`)
    }, 120_000) // two CLI processes; slow on a loaded machine
  }

  it('uses an existing connection of the kind and follows the file indentation', () => {
    const yaml = `connections:
    queue: { kind: amqp, url: "amqp://guest:guest@127.0.0.1:5672" }
functions:
    ping:
        code: functions/ping.ts
        trigger: { http: { route: ping, auth: anonymous } }
`
    const dir = project({ 'package.json': '{}\n', 'gateway.yaml': yaml, 'functions/ping.ts': 'export default () => 1\n' })
    const r = addFunction({ name: 'orders', trigger: 'amqp', config: join(dir, 'gateway.yaml') })
    expect(r.connection).toEqual({ name: 'queue', added: false })
    const after = readFileSync(join(dir, 'gateway.yaml'), 'utf8')
    expect(insertedRuns(yaml, after)).toEqual([
      '    # messages of queue orders (declared when missing), in batches\n    orders:\n        code: functions/orders.ts\n        trigger: { amqp: { connection: queue, queue: orders, declare: { durable: true } } }',
    ])
  })

  it('adds a connections: block above the functions (and their comments) when there is none', () => {
    const yaml = `http: { port: 0 }

# The functions
functions:
  ping:
    code: functions/ping.ts
    trigger: { http: { route: ping, auth: anonymous } }
`
    const dir = project({ 'package.json': '{}\n', 'gateway.yaml': yaml, 'functions/ping.ts': 'export default () => 1\n' })
    addFunction({ name: 'events', trigger: 'kafka', config: join(dir, 'gateway.yaml') })
    const after = readFileSync(join(dir, 'gateway.yaml'), 'utf8')
    const runs = insertedRuns(yaml, after)
    expect(runs[0]).toMatch(/^connections:\n {2}# placeholder: .+\n {2}kafka: \{ kind: kafka, brokers: \[ "?127\.0\.0\.1:9092"? \] \}\n$/)
    expect(after.indexOf('connections:')).toBeLessThan(after.indexOf('# The functions'))
    expect((parse(after) as Config).functions.events?.trigger.kafka).toEqual({ connection: 'kafka', topic: 'events' })
  })

  it('refuses an existing function name or file, and a flow-style functions: map, changing nothing', () => {
    const dir = project()
    const config = join(dir, 'config/gateway.yaml')
    const codeOf = (f: () => unknown) => {
      try {
        f()
      } catch (e) {
        return (e as { code?: unknown }).code
      }
      return 'no error'
    }
    expect(codeOf(() => addFunction({ name: 'report', trigger: 'timer', config }))).toBe('SLUICE_ERR_CLI_NEW_EXISTS')
    expect(codeOf(() => addFunction({ name: 'station-status', trigger: 'http', config }))).toBe('SLUICE_ERR_CLI_NEW_EXISTS')
    const fileOnly = project({ ...FILES, 'functions/orphan.ts': 'export default () => 1\n' })
    expect(codeOf(() => addFunction({ name: 'orphan', trigger: 'http', config: join(fileOnly, 'config/gateway.yaml') }))).toBe('SLUICE_ERR_CLI_NEW_EXISTS')
    expect(readFileSync(join(fileOnly, 'functions/orphan.ts'), 'utf8')).toBe('export default () => 1\n')
    expect(codeOf(() => addFunction({ name: 'x', trigger: 'smtp', config }))).toBe('SLUICE_ERR_CLI_USAGE')
    expect(codeOf(() => addFunction({ name: '9lives', trigger: 'http', config }))).toBe('SLUICE_ERR_CLI_USAGE')
    expect(readFileSync(config, 'utf8')).toBe(CONFIG)
    expect(existsSync(join(dir, 'functions/x.ts'))).toBe(false)

    const flow = project({ 'package.json': '{}\n', 'gateway.yaml': 'functions: { a: { code: a.ts, trigger: { http: { route: a } } } }\n' })
    expect(codeOf(() => addFunction({ name: 'b', trigger: 'http', config: join(flow, 'gateway.yaml') }))).toBe('SLUICE_ERR_CLI_NEW_LAYOUT')
    expect(existsSync(join(flow, 'functions/b.ts'))).toBe(false)

    const r = sluice(['new', 'report', '--trigger', 'timer'], dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('has a function named report already; nothing was changed [SLUICE_ERR_CLI_NEW_EXISTS]')
    const usage = sluice(['new', 'orders'], dir)
    expect(usage.status).toBe(2)
    expect(usage.stderr).toContain('--trigger http|mqtt|amqp|kafka|eventhubs|timer')
  }, 120_000)
})
