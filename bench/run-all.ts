/**
 * `npm run bench`: every benchmark in turn, then one summary table (rate ratio against each
 * one's baseline in the same run, CPU per event in the gateway process and its worker hosts).
 *
 *   SLUICE_BENCH_SKIP=kafka,http   leave benchmarks out (names as in the table below)
 *   SLUICE_BENCH_QUICK=1           fewer events and rounds (a smoke run, not for the README)
 *
 * A benchmark whose server is missing is skipped with a line saying so: mqtt needs the
 * `mosquitto` binary, amqp a RabbitMQ at SLUICE_BENCH_AMQP_URL (default 127.0.0.1:5672), kafka
 * Java (the test helper fetches Kafka 4 with Maven).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fmt } from './common.js'
import type { SummaryRow } from './summary.js'

const quick = process.env.SLUICE_BENCH_QUICK === '1'
const skip = new Set((process.env.SLUICE_BENCH_SKIP ?? '').split(',').filter(Boolean))

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
const reachable = (url: string) =>
  new Promise<boolean>((resolve) => {
    const u = new URL(url)
    const s = connect(Number(u.port || 5672), u.hostname)
    s.setTimeout(2000)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
    s.once('timeout', () => {
      s.destroy()
      resolve(false)
    })
  })

interface Bench {
  name: string
  script: string
  args: string[]
  quickArgs: string[]
  /** Why it cannot run here, or undefined. */
  missing?: () => Promise<string | undefined>
}

const BENCHES: Bench[] = [
  { name: 'warm-path', script: 'warm-path.ts', args: [], quickArgs: ['50000'] },
  { name: 'handover', script: 'handover.ts', args: [], quickArgs: ['30000', '1'] },
  {
    name: 'mqtt',
    script: 'mqtt-drain.ts',
    args: ['50000', '3'],
    quickArgs: ['20000', '1'],
    missing: async () => (has('mosquitto') ? undefined : 'no mosquitto binary on PATH'),
  },
  {
    name: 'amqp',
    script: 'amqp.ts',
    args: ['50000', '5'],
    quickArgs: ['20000', '1'],
    missing: async () => {
      const url = process.env.SLUICE_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
      return (await reachable(url)) ? undefined : `no RabbitMQ at ${new URL(url).host}`
    },
  },
  { name: 'eventhubs', script: 'eventhubs.ts', args: [], quickArgs: ['5000', '4', '1'] },
  { name: 'kafka', script: 'kafka.ts', args: [], quickArgs: [], missing: async () => (has('java') ? undefined : 'no java on PATH (Kafka 4 broker)') },
  { name: 'http', script: 'http.ts', args: ['5', '10,100', '2'], quickArgs: ['2', '10,100', '1'] },
  { name: 'isolate-call', script: 'isolate-call.ts', args: [], quickArgs: ['5000'] },
]

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-all-'))
const summaryFile = join(dir, 'summary.jsonl')
const ran: Array<{ name: string; status: string }> = []
for (const b of BENCHES) {
  if (skip.has(b.name)) {
    ran.push({ name: b.name, status: 'skipped (SLUICE_BENCH_SKIP)' })
    continue
  }
  const why = await b.missing?.()
  if (why) {
    process.stderr.write(`\n== ${b.name}: skipped, ${why}\n`)
    ran.push({ name: b.name, status: `skipped: ${why}` })
    continue
  }
  process.stderr.write(`\n== ${b.name}\n`)
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', join('bench', b.script), ...(quick ? b.quickArgs : b.args)], {
      stdio: 'inherit',
      env: { ...process.env, SLUICE_BENCH_SUMMARY: summaryFile },
    })
    child.once('exit', resolve)
  })
  ran.push({ name: b.name, status: code === 0 ? 'ran' : `failed (exit ${code})` })
}

let rows: SummaryRow[] = []
try {
  rows = readFileSync(summaryFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SummaryRow)
} catch {
  // nothing ran
}
rmSync(dir, { recursive: true, force: true })
const us = (n: number | undefined) => (n === undefined ? '-' : fmt(n, 1))
console.log(`\n## Summary${quick ? ' (quick run)' : ''}\n`)
console.log(
  '| source | rate ratio | baseline | CPU us/event: gateway + hosts | baseline CPU us/event | machine CPU us/event: sluice / baseline | ceiling | note |',
)
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
for (const r of rows) {
  const cpu = r.cpuHosts === undefined ? us(r.cpuGateway) : `${us(r.cpuGateway)} + ${us(r.cpuHosts)}`
  const machine = r.machine === undefined ? '-' : `${us(r.machine)} / ${us(r.machineBaseline)}`
  const ceiling = r.ceiling === undefined ? '-' : `${fmt(r.ceiling)}x`
  console.log(`| ${r.source} | ${fmt(r.ratio)}x | ${r.baseline} | ${cpu} | ${us(r.cpuBaseline)} | ${machine} | ${ceiling} | ${r.note ?? ''} |`)
}
console.log(
  '\nmachine CPU: every core of the machine, broker or load generator included, per event; ceiling: the ratio sluice would reach with every core busy at that cost (bench/README.md, "CPU budget").',
)
const notRun = ran.filter((r) => r.status !== 'ran')
if (notRun.length > 0) console.log(`\n${notRun.map((r) => `- ${r.name}: ${r.status}`).join('\n')}`)
if (ran.some((r) => r.status.startsWith('failed'))) process.exitCode = 1
