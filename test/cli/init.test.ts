/**
 * `sluice init` as a user meets it: the CLI from dist/ (npm test builds first) writes a project in
 * a folder outside the repository, which gets this repository as node_modules/sluice (a symlink,
 * as `npm link` makes), and then validates, starts, serves HTTP, runs the MQTT function on the
 * embedded broker and stops on SIGTERM with exit code 0.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { connectAsync } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/gateway.js'
import { collectJsonLines } from '../helpers/gateway-process.js'

const REPO = resolve('.')
const BIN = join(REPO, 'bin/sluice.js')
const TSC = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc')
const FILES = [
  'package.json',
  'tsconfig.json',
  'config/gateway.yaml',
  'functions/hello.ts',
  'functions/readings.ts',
  'functions/heartbeat.ts',
  'README.md',
  '.gitignore',
]

const cleanups: Array<() => void | Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-init-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const sluice = (args: string[], cwd: string, bin = BIN) => spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })

/** `sluice init <name>` in a fresh folder, with this repository linked as node_modules/sluice. */
function scaffold(): string {
  const parent = tempDir()
  const r = sluice(['init', 'my-app'], parent)
  expect(r.stderr).toBe('')
  expect(r.status).toBe(0)
  const dir = join(parent, 'my-app')
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(REPO, join(dir, 'node_modules', 'sluice'), 'dir')
  return dir
}

/** A gateway started with the linked package's bin, as `npm start` runs it. */
class LinkedGateway {
  readonly lines: Array<Record<string, unknown>> = []
  private stderr = ''
  readonly child: ChildProcess

  constructor(dir: string) {
    this.child = spawn(process.execPath, [join(dir, 'node_modules/sluice/bin/sluice.js'), 'start'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    })
    collectJsonLines(this.child.stdout, this.lines)
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)))
    cleanups.push(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    })
  }

  line(match: (l: Record<string, unknown>) => boolean, what: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return waitFor(
      () => {
        if (this.child.exitCode !== null) throw new Error(`gateway exited with ${this.child.exitCode}: ${this.stderr}`)
        return this.lines.find(match)
      },
      timeoutMs,
      what,
    )
  }

  stop(): Promise<number | null> {
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)))
    this.child.kill('SIGTERM')
    return exited
  }
}

describe('sluice init', () => {
  it('writes a project that validates, starts, answers HTTP, runs its MQTT function and stops on SIGTERM', async () => {
    const parent = tempDir()
    const r = sluice(['init', 'my-app'], parent)
    expect(r.status).toBe(0)
    for (const f of FILES) expect(r.stdout).toContain(`  ${f}\n`)
    expect(r.stdout).toMatch(/Next:\n {2}cd my-app\n {2}npm install\n {2}npm start\n/)
    const dir = join(parent, 'my-app')
    expect(readdirSync(dir).sort()).toEqual(['.gitignore', 'README.md', 'config', 'functions', 'package.json', 'tsconfig.json'])
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      name: string
      dependencies: Record<string, string>
      scripts: Record<string, string>
    }
    const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version
    expect(pkg).toMatchObject({ name: 'my-app', dependencies: { sluice: `^${version}` }, scripts: { start: 'sluice start' } })
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toMatch(/npm install\nnpm start\s.*\ncurl /)

    mkdirSync(join(dir, 'node_modules'))
    symlinkSync(REPO, join(dir, 'node_modules', 'sluice'), 'dir')
    const linkedBin = join(dir, 'node_modules/sluice/bin/sluice.js')
    const v = sluice(['validate'], dir, linkedBin)
    expect(v.stderr).toBe('')
    expect(v.status).toBe(0)
    expect(v.stdout).toMatch(/ok \(3 functions, 1 connection/)

    // Free ports picked by the OS instead of 7071 and 1884, which another gateway may hold.
    const configFile = join(dir, 'config/gateway.yaml')
    const yaml = readFileSync(configFile, 'utf8')
    expect(yaml).toContain('http: { port: 7071 }')
    expect(yaml).toContain('url: embedded, port: 1884 }')
    writeFileSync(
      configFile,
      yaml.replace('http: { port: 7071 }', 'http: { port: 0, host: 127.0.0.1 }').replace('url: embedded, port: 1884 }', 'url: embedded, port: 0 }'),
    )

    const gw = new LinkedGateway(dir)
    const up = await gw.line((l) => l.msg === 'gateway up', 'gateway up')
    const broker = await gw.line((l) => l.msg === 'embedded MQTT broker listening', 'embedded broker')

    const res = await fetch(`${String(up.url)}/api/hello?name=init-test`)
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as { message: string; invocationId: string }
    expect(body.message).toBe('Hello, init-test!')
    expect(body.invocationId).toMatch(/\S/)

    const client = await connectAsync(String(broker.url), { clientId: `init-test-${process.pid}-${Date.now()}` })
    cleanups.push(() => client.endAsync())
    const marker = `reading-${Date.now()}`
    await client.publishAsync('sensors/s1/readings', JSON.stringify({ device: marker, value: 21.5 }), { qos: 1 })
    const ran = await gw.line((l) => l.function === 'readings' && l.source === 'function' && String(l.msg).includes(marker), 'the readings function log line')
    expect(String(ran.msg)).toContain('readings got a message on sensors/s1/readings (qos 1)')
    expect(ran.invocationId).toEqual(expect.any(String))

    expect(await gw.stop()).toBe(0)
    // Four node processes in a row (init, validate, the gateway and its worker hosts): more than
    // the default minute on a loaded machine.
  }, 180_000)

  it('writes functions that tsc type-checks cleanly against sluice/function, without Node types', () => {
    const dir = scaffold()
    const ok = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json', '--pretty', 'false'], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
    expect(ok.stdout + ok.stderr).toBe('')
    expect(ok.status).toBe(0)

    // The same check fails for wrong usage and for Node globals, which functions do not have.
    writeFileSync(
      join(dir, 'functions/wrong.ts'),
      `import type { Handler, MqttEvent } from 'sluice/function'
const handler: Handler<MqttEvent<{ n: number }>> = async (events, ctx) => {
  ctx.output(1)
  ctx.log(process.env.HOME, events[0]?.body.n)
}
export default handler
`,
    )
    const bad = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json', '--pretty', 'false'], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
    expect(bad.status).not.toBe(0)
    expect(bad.stdout).toMatch(/functions\/wrong\.ts\(3,\d+\): error TS2554: Expected 2 arguments, but got 1/)
    expect(bad.stdout).toMatch(/functions\/wrong\.ts\(4,\d+\): error TS\d+: Cannot find name 'process'/)
  })

  it('ships its templates, the built CLI and the function types in the npm package', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8', timeout: 120_000 })
    expect(r.status).toBe(0)
    const files = new Set((JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((f) => f.path))
    for (const f of [
      'bin/sluice.js',
      'dist/src/cli/init.js',
      'dist/src/cli/new-function.js',
      'dist/src/sdk/function.d.ts',
      'templates/project/config/gateway.yaml',
      'templates/project/gitignore',
      'templates/functions/kafka.ts',
      'schema/sluice.schema.json',
    ]) {
      expect(files.has(f), f).toBe(true)
    }
  })

  it('refuses to overwrite: lists the files that exist, exits non-zero and writes nothing', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'package.json'), '{"name":"mine"}\n')
    mkdirSync(join(dir, 'functions'))
    writeFileSync(join(dir, 'functions/hello.ts'), 'export default () => 1\n')
    const r = sluice(['init'], dir)
    expect(r.status).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain('[SLUICE_ERR_CLI_INIT_EXISTS]')
    expect(r.stderr).toContain('package.json, functions/hello.ts; nothing was written')
    expect(readdirSync(dir).sort()).toEqual(['functions', 'package.json'])
    expect(readdirSync(join(dir, 'functions'))).toEqual(['hello.ts'])
    expect(readFileSync(join(dir, 'package.json'), 'utf8')).toBe('{"name":"mine"}\n')
    expect(existsSync(join(dir, 'config'))).toBe(false)
  })
})
