/**
 * A gateway in a child process, started the way users start it (`sluice start`, from the sources
 * through tsx), so a test can kill -9 it: a real crash, with no chance to settle anything.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { waitFor } from '../../helpers/gateway.js'
import { sluiceArgs } from '../../helpers/sluice-bin.js'

const ROOT = resolve(import.meta.dirname, '../../..')

export class ChildGateway {
  readonly lines: Array<Record<string, unknown>> = []
  url = ''
  private readonly exited: Promise<number | null>

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)))
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>
        this.lines.push(rec)
        if (rec.msg === 'gateway up' && typeof rec.url === 'string') this.url = rec.url
      } catch {
        // not a log line
      }
    })
    child.stderr?.on('data', () => undefined)
  }

  /** Starts `sluice start --config <config>` (run in the repository root so tsx resolves; paths in the config are absolute). */
  static async start(config: string): Promise<ChildGateway> {
    const child = spawn(process.execPath, [...sluiceArgs(), 'start', '--config', config], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    })
    const g = new ChildGateway(child)
    await Promise.race([
      waitFor(() => g.url !== '', 60_000, 'the child gateway to start'),
      g.exited.then((code) => {
        throw new Error(`the child gateway exited with ${code} before it was up: ${JSON.stringify(g.lines.slice(-5))}`)
      }),
    ])
    return g
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** kill -9: nothing is acknowledged, nothing is cleaned up. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL')
    await this.exited
  }

  /** SIGTERM: the gateway drains and exits 0. */
  async stop(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM')
    return this.exited
  }

  async admin<T>(path: string): Promise<T> {
    const res = await fetch(`${this.url}${path}`)
    return (await res.json()) as T
  }
}
