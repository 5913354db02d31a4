/**
 * Node-RED as an HTTP baseline for bench/http.ts: its own process (node-red from devDependencies)
 * running one flow, http in -> function -> http response, on a free port. Returns undefined (and
 * says why) when Node-RED cannot start here.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

export interface NodeRed {
  url: string
  pid: number
  stop(): Promise<void>
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

/** Starts Node-RED with a flow answering GET /stations/:id with `body` from a function node. */
export async function startNodeRed(body: unknown): Promise<NodeRed | undefined> {
  let red: string
  try {
    red = join(dirname(createRequire(import.meta.url).resolve('node-red/package.json')), 'red.js')
  } catch {
    process.stderr.write('Node-RED baseline skipped: node-red is not installed (npm install)\n')
    return undefined
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-node-red-'))
  const flows = [
    { id: 'tab', type: 'tab', label: 'bench' },
    { id: 'in', type: 'http in', z: 'tab', url: '/stations/:id', method: 'get', wires: [['fn']] },
    { id: 'fn', type: 'function', z: 'tab', func: `msg.payload = ${JSON.stringify(body)};\nreturn msg;`, outputs: 1, wires: [['out']] },
    { id: 'out', type: 'http response', z: 'tab', statusCode: '', headers: {}, wires: [] },
  ]
  writeFileSync(join(dir, 'flows.json'), JSON.stringify(flows))
  writeFileSync(
    join(dir, 'settings.js'),
    `module.exports = { uiHost: '127.0.0.1', flowFile: 'flows.json', logging: { console: { level: 'warn' } }, editorTheme: { tours: false } }\n`,
  )
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [red, '--userDir', dir, '--settings', join(dir, 'settings.js'), '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)))
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)))
  const url = `http://127.0.0.1:${port}/stations/st-007`
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    }
    rmSync(dir, { recursive: true, force: true })
  }
  for (let i = 0; i < 300 && child.exitCode === null; i++) {
    try {
      const r = await fetch(url)
      if (r.ok && JSON.stringify(await r.json()) === JSON.stringify(body)) return { url, pid: child.pid as number, stop }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  process.stderr.write(`Node-RED baseline skipped: it did not answer within 30 s\n${out}\n`)
  await stop()
  return undefined
}
