/**
 * Pieces of the hot-reload tests: a project on disk whose gateway.yaml the gateway reads again,
 * an in-process gateway started from that file, a continuous MQTT stream with a ledger of what the
 * broker confirmed, and the `done <version> <n>` lines the test functions log per event.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectAsync, type MqttClient } from 'mqtt'
import { onTestFinished } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { loadConfig } from '../../src/config/load.js'
import { Gateway } from '../../src/gateway.js'
import { createLogger } from '../../src/log.js'
import { LogCapture, projectDir } from '../helpers/gateway.js'

export const BROKER = 'mqtt://127.0.0.1:1883'

/** A name no other test (or earlier run) uses. */
export const uid = (prefix = 't') => `${prefix}${randomBytes(5).toString('hex')}`

/**
 * A function that logs `done <version> <n>` per event; its version comes from ./<versionFile>
 * (an import, so the reload must follow the bundle's inputs, not only the entry file).
 */
export const versionedFunction = (versionFile = 'version') => `import { VERSION } from './${versionFile}'
export default async function (events: Array<{ body: { n: number } }>, ctx: { log: { info(...a: unknown[]): void } }) {
  for (const e of events) ctx.log.info('done ' + VERSION + ' ' + e.body.n)
}
`

export const versionModule = (v: string) => `export const VERSION = '${v}'\n`

export interface ReloadProject {
  dir: string
  file: string
  write(rel: string, text: string): void
}

/** A project folder with gateway.yaml (HTTP on a free port, one worker host, SQLite) and `files`; removed when the test ends. */
export function reloadProject(yaml: string, files: Record<string, string>): ReloadProject {
  const head = 'http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: { path: state.db }\n'
  const p = projectDir({ 'package.json': '{"name":"reload-test","private":true}\n', 'gateway.yaml': head + yaml, ...files })
  onTestFinished(() => p.cleanup())
  return { dir: p.dir, file: join(p.dir, 'gateway.yaml'), write: (rel, text) => writeFileSync(join(p.dir, rel), text) }
}

/** Starts a gateway from the project's gateway.yaml (as `sluice start` does); stopped when the test ends. */
export async function startFromFile(project: ReloadProject): Promise<{ gw: Gateway; logs: LogCapture }> {
  const loaded = await loadConfig(project.file, { connectors: CONNECTORS })
  const logs = new LogCapture()
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('debug', logs) })
  onTestFinished(() => gw.stop({ timeoutMs: 10_000 }))
  return { gw, logs }
}

/** `done <version> <n>` lines of function `fn`, in the order logged, with their log time. */
export function doneLines(lines: ReadonlyArray<Record<string, unknown>>, fn: string): Array<{ version: string; n: number; time: number }> {
  const out: Array<{ version: string; n: number; time: number }> = []
  for (const l of lines) {
    if (l.function !== fn || l.source !== 'function') continue
    const m = /^done (\S+) (\d+)$/.exec(String(l.msg))
    if (m) out.push({ version: m[1] as string, n: Number(m[2]), time: Date.parse(String(l.time)) })
  }
  return out
}

/**
 * Publishes `{ n }` (n = 0, 1, 2...) to `topic` at QoS 1, one message every `everyMs`, until
 * `stop()`; `confirmed` holds every n the broker acknowledged (the ledger), with its PUBACK time.
 */
export class Stream {
  readonly confirmed = new Map<number, number>()
  private client: MqttClient | undefined
  private next = 0
  private timer: NodeJS.Timeout | undefined
  private inflight = new Set<Promise<unknown>>()

  constructor(
    readonly topic: string,
    private readonly everyMs = 5,
  ) {}

  async start(): Promise<void> {
    this.client = await connectAsync(BROKER, { clientId: uid('pub'), reconnectPeriod: 0, protocolVersion: 5 })
    onTestFinished(() => this.stop())
    this.timer = setInterval(() => {
      const n = this.next++
      const p = (this.client as MqttClient).publishAsync(this.topic, JSON.stringify({ n }), { qos: 1 }).then(() => this.confirmed.set(n, Date.now()))
      this.inflight.add(p)
      void p.finally(() => this.inflight.delete(p)).catch(() => undefined)
    }, this.everyMs)
  }

  /** Numbers published so far (confirmed or not). */
  get published(): number {
    return this.next
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await Promise.allSettled([...this.inflight])
    await this.client?.endAsync().catch(() => undefined)
    this.client = undefined
  }
}
