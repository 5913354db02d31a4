import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Writable } from 'node:stream'
import { onTestFinished } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig, type LoadedConfig } from '../../src/config/load.js'
import { Gateway } from '../../src/gateway.js'
import { createLogger } from '../../src/log.js'

/** A folder with files written from a map of relative path -> content; removed by `cleanup`. */
export function projectDir(files: Record<string, string>): { dir: string; cleanup(): void } {
  const dir = writeFiles(mkdtempSync(join(tmpdir(), 'sluice-test-')), files)
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Writes a map of relative path -> content into `dir` (creating folders); returns `dir`. */
export function writeFiles(dir: string, files: Record<string, string>): string {
  for (const [rel, text] of Object.entries(files)) {
    const p = join(dir, rel)
    mkdirSync(dirname(p), { recursive: true })
    writeFileSync(p, text)
  }
  return dir
}

/** Collects the gateway's JSON log lines for assertions. */
export class LogCapture extends Writable {
  readonly lines: Array<Record<string, unknown>> = []
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim()) this.lines.push(JSON.parse(line) as Record<string, unknown>)
    }
    cb()
  }
  find(msg: string | RegExp): Array<Record<string, unknown>> {
    return this.lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))))
  }
}

export interface TestGateway {
  gw: Gateway
  url: string
  dir: string
  logs: LogCapture
  loaded: LoadedConfig
  /** The whole configuration text the gateway started from (write it to reload from a file). */
  yaml: string
  stop(): Promise<void>
}

/**
 * Starts a gateway from YAML and function sources in a fresh temp folder, with an HTTP port
 * picked by the OS (override other `http:` settings with `opts.http`), one worker host and its
 * state store in the folder. `stop` stops the gateway and removes the folder.
 *
 * With `opts.dir` the gateway runs in that existing folder instead (`files` are written into it)
 * and `stop` leaves the folder, so a later gateway can start on the same state store; the caller
 * removes it (e.g. made with `projectDir`, removed with its `cleanup`).
 */
export async function startGateway(opts: {
  yaml: string
  files?: Record<string, string>
  env?: Record<string, string>
  hosts?: number
  /** Extra `http:` settings (e.g. `{ bodyLimit: 2048 }`), merged over port 0 on 127.0.0.1. */
  http?: Record<string, string | number | boolean>
  /** Run in this existing folder and keep it on stop (see above). */
  dir?: string
  /** The `store:` settings as YAML flow, e.g. `{ kind: postgres, url: ..., schema: ... }`. Default: SQLite in the folder. */
  store?: string
}): Promise<TestGateway> {
  const project = opts.dir === undefined ? projectDir(opts.files ?? {}) : { dir: writeFiles(opts.dir, opts.files ?? {}), cleanup: () => undefined }
  const hosts = opts.hosts ?? 1
  // JSON is valid YAML flow syntax, so the merged settings stay one `http:` line.
  const http = JSON.stringify({ port: 0, host: '127.0.0.1', ...opts.http })
  const yaml = `http: ${http}\nworkers: { hosts: ${hosts}, prewarm: 1 }\nstore: ${opts.store ?? '{ path: state.db }'}\n${opts.yaml}`
  const loaded = await parseConfig(yaml, join(project.dir, 'gateway.yaml'), { connectors: CONNECTORS, root: project.dir, env: opts.env ?? {} })
  const logs = new LogCapture()
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('debug', logs) })
  return {
    gw,
    url: gw.url,
    dir: project.dir,
    logs,
    loaded,
    yaml,
    stop: async () => {
      await gw.stop({ timeoutMs: 10_000 })
      project.cleanup()
    },
  }
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws). */

/**
 * A gateway with one function `name` (code `code` in functions/<name>.js) behind a timer that never
 * fires: the test hands it events itself (gw.router.deliver). `fnYaml`: the function's other
 * settings, each line indented four spaces. The gateway stops when the test ends.
 */
export async function startRouterGateway(name: string, code: string, fnYaml = ''): Promise<TestGateway> {
  const t = await startGateway({
    yaml: `functions:\n  ${name}:\n    code: functions/${name}.js\n    trigger: { timer: { schedule: "0 0 0 1 1 *" } }\n${fnYaml}`,
    files: { [`functions/${name}.js`]: code },
  })
  onTestFinished(() => t.stop())
  return t
}
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<Truthy<T>> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v) return v as Truthy<T>
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
