/**
 * A Mosquitto of the test's own, for tests that restart the broker or need other settings than
 * the system broker on 1883: a free port, a temp folder for persistence, the settings of
 * test/mosquitto/test.conf. Also used by bench/mqtt-drain.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const CONF = resolve(import.meta.dirname, '../../mosquitto/test.conf')

/** Brokers of this process and their folders: removed if the process exits without closing them. */
const live = new Set<ChildProcess>()
const dirs = new Set<string>()
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL')
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

export interface Mosquitto {
  readonly port: number
  readonly url: string
  /** Stops the broker (SIGTERM: it writes its persistence file first). */
  stop(): Promise<void>
  /** Starts it again on the same port with the same state (nothing when it runs). */
  start(): Promise<void>
  restart(): Promise<void>
  /** Stops it and removes its folder. */
  close(): Promise<void>
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

/** Resolves once something accepts TCP connections on `port`, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 10_000, alive: () => boolean = () => true): Promise<void> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        r(true)
      })
      s.once('error', () => r(false))
    })
    if (ok) return
    if (!alive()) throw new Error(`mosquitto on port ${port} exited`)
    if (Date.now() > end) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export async function startMosquitto(opts: { persistence?: boolean; settings?: string } = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-mosquitto-'))
  // Mosquitto started as root runs as the mosquitto user: it must be able to write here.
  chmodSync(dir, 0o777)
  dirs.add(dir)
  let port = await freePort()
  let proc: ChildProcess | undefined
  let stderr = ''
  const writeConf = () => {
    const conf = [
      readFileSync(CONF, 'utf8'),
      `listener ${port} 127.0.0.1`,
      `persistence_location ${dir}/`,
      opts.persistence === false ? 'persistence false' : '',
      opts.settings ?? '',
    ].join('\n')
    writeFileSync(join(dir, 'mosquitto.conf'), `${conf}\n`)
  }
  const running = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null
  const start = async () => {
    if (running()) return
    writeConf()
    const p = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
    proc = p
    live.add(p)
    let exited = false
    p.once('exit', () => {
      exited = true
      live.delete(p)
    })
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    try {
      await waitForPort(port, 10_000, () => !exited)
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${stderr.trim()}`)
    }
  }
  const stop = async () => {
    const p = proc
    proc = undefined
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>((r) => p.once('exit', () => r()))
    p.kill('SIGTERM')
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
  }
  // The first start may lose a race for the free port: try a few ports.
  for (let i = 0; ; i++) {
    try {
      await start()
      break
    } catch (e) {
      await stop()
      if (i >= 3) {
        rmSync(dir, { recursive: true, force: true })
        dirs.delete(dir)
        throw e
      }
      port = await freePort()
    }
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    stop,
    start,
    restart: async () => {
      await stop()
      await start()
    },
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
      dirs.delete(dir)
    },
  }
}
