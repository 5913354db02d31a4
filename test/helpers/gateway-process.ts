import { spawn, type ChildProcess } from 'node:child_process'
import type { Readable } from 'node:stream'
import { waitFor } from './gateway.js'
import { sluiceArgs } from './sluice-bin.js'

/**
 * Pushes every JSON log line a process writes on `stream` into `lines` (a line that is not JSON
 * as `{ msg: line }`), across chunk boundaries.
 */
export function collectJsonLines(stream: Readable | null | undefined, lines: Array<Record<string, unknown>>): void {
  let buf = ''
  stream?.on('data', (d: Buffer) => {
    buf += d.toString()
    const parts = buf.split('\n')
    buf = parts.pop() ?? ''
    for (const p of parts) {
      if (!p.trim()) continue
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>)
      } catch {
        lines.push({ msg: p })
      }
    }
  })
}

/**
 * A gateway in its own process (`sluice start`, see sluice-bin.ts), for fault tests
 * that kill it with SIGKILL. `start()` resolves when it logs "gateway up"; `kill()` sends
 * SIGKILL and waits for the exit; `stop()` sends SIGTERM and resolves with the exit code.
 */
export class GatewayProcess {
  child: ChildProcess | undefined
  readonly lines: Array<Record<string, unknown>> = []
  url = ''
  starts = 0

  constructor(
    readonly dir: string,
    readonly config = 'gateway.yaml',
    /** More arguments for `sluice start` (e.g. `--watch`). */
    readonly args: readonly string[] = [],
  ) {}

  async start(timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, [...sluiceArgs(), 'start', '--config', this.config, ...this.args], {
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    })
    this.child = child
    this.starts++
    const mark = this.lines.length
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
    collectJsonLines(child.stdout, this.lines)
    const up = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode} during start: ${stderr}`)
        return this.lines.slice(mark).find((l) => l.msg === 'gateway up')
      },
      timeoutMs,
      'gateway up',
    )
    this.url = String(up.url)
  }

  async kill(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
  }

  async stop(): Promise<number | null> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    child.kill('SIGTERM')
    return exited
  }
}
