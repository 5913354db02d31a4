/**
 * Memory: RSS per idle warm function instance in a worker host (instance created, one batch run,
 * then idle), against a bare isolate (isolate + context + the same compiled script) created in a
 * child process of this same script.
 *
 *   node --no-node-snapshot --import tsx bench/memory.ts [instances]
 */
import { fork } from 'node:child_process'
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compileFunction } from '../src/sandbox/compile.js'
import { SandboxPool } from '../src/sandbox/pool.js'
import { asLogger, createLogger } from '../src/log.js'
import { fmt } from './common.js'

const N = Number(process.argv[2] ?? 200)
const FN = `export default async function (events) { let low = 0; for (const e of events) if (e.body.battery < 15) low++; return { low } }`

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function gatewayInstances(code: string, hash: string): Promise<number> {
  const pool = new SandboxPool({ hosts: 1, prewarm: 0, prewarmSizes: [], log: asLogger(createLogger('warn', process.stderr as never)) })
  await pool.start()
  pool.registerCode(hash, code)
  // One instance first, so code caches and lazily loaded parts are in the baseline.
  const first = pool.create(0, { fn: 'f', hash, memoryMb: 64, outputs: [], initTimeoutMs: 5000 })
  await pool.run(first, '[{"id":"a","body":{"battery":3}}]', 'i', 5000, 5000)
  await sleep(500)
  const pid = pool.info()[0]?.pid as number
  const before = rssOf(pid)
  for (let i = 0; i < N; i++) {
    const h = pool.create(0, { fn: 'f', hash, memoryMb: 64, outputs: [], initTimeoutMs: 5000 })
    const r = await pool.run(h, '[{"id":"a","body":{"battery":3}}]', 'i', 5000, 5000)
    if (!r.payload.ok) throw new Error(JSON.stringify(r.payload.error))
  }
  await sleep(1000)
  const after = rssOf(pid)
  await pool.close()
  return (after - before) / N
}

function bareIsolates(code: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./memory-bare.ts', import.meta.url), [String(N)], { execArgv: ['--no-node-snapshot', '--import', 'tsx'] })
    child.once('message', (m) => resolve(m as number))
    child.once('error', reject)
    child.send(code)
  })
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-mem-'))
writeFileSync(join(dir, 'fn.js'), FN)
const compiled = await compileFunction(join(dir, 'fn.js'), { root: dir, functionName: 'f' })
const gw = await gatewayInstances(compiled.code, compiled.hash)
const bare = await bareIsolates(compiled.code)
console.log(`\nRSS per idle warm instance, ${N} instances (MiB)`)
console.log(`bare isolate + context + script   ${fmt(bare / 1048576)}`)
console.log(`sluice instance in a worker host  ${fmt(gw / 1048576)}   (${fmt(gw / bare)}x bare)`)
