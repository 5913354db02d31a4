/**
 * A/B: one benchmark run alternately from another revision ("before", a temporary git worktree)
 * and from this checkout ("after"), in pairs, then each summary row's medians side by side. The
 * machines under these benchmarks drift by up to 2x within minutes (bench/README.md, session
 * 10), so a change is measured against its base in alternating runs, never against a figure
 * from another time.
 *
 *   node --import tsx bench/ab.ts <revision> <pairs> <benchmark script> [its args...]
 *   node --import tsx bench/ab.ts HEAD~1 4 handover.ts 100000 3 raw
 *
 * The benchmark must record summary rows (bench/summary.ts); both sides use this checkout's
 * node_modules and Kafka jars. Each run's rows are printed as it ends.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fmt, median } from './common.js'
import type { SummaryRow } from './summary.js'

const [rev, pairsArg, script, ...args] = process.argv.slice(2)
const pairs = Number(pairsArg)
if (!rev || !script || !Number.isInteger(pairs) || pairs < 1) {
  process.stderr.write('usage: node --import tsx bench/ab.ts <revision> <pairs> <benchmark script> [args...]\n')
  process.exit(2)
}

const repo = resolve(import.meta.dirname, '..')
const git = (...a: string[]) => spawnSync('git', ['-C', repo, ...a], { encoding: 'utf8' })
const tmp = mkdtempSync(join(tmpdir(), 'sluice-ab-'))
const worktree = join(tmp, 'before')
const added = git('worktree', 'add', '--detach', worktree, rev)
if (added.status !== 0) {
  process.stderr.write(`cannot check out ${rev}: ${added.stderr.trim()}\n`)
  process.exit(2)
}

type Side = 'before' | 'after'
const rows: Record<Side, SummaryRow[][]> = { before: [], after: [] }

function run(side: Side, cwd: string, pair: number): Promise<SummaryRow[]> {
  const file = join(tmp, `${side}-${pair}.jsonl`)
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', join('bench', script as string), ...args], {
      cwd,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, SLUICE_BENCH_SUMMARY: file },
    })
    child.once('exit', (code) => {
      if (code !== 0) return fail(new Error(`${side} run ${pair} exited with ${code}`))
      const out = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []
      done(out.map((l) => JSON.parse(l) as SummaryRow))
    })
  })
}

const us = (n: number | undefined) => (n === undefined ? '-' : fmt(n, 1))
const medianOf = (xs: number[]) => (xs.length === 0 ? undefined : median(xs))
const show = (r: SummaryRow) => `${fmt(r.ratio)}x, ${us(r.cpuGateway)}${r.cpuHosts === undefined ? '' : ` + ${us(r.cpuHosts)}`} us`

try {
  for (const dir of ['node_modules', join('test', 'kafka-broker', 'jars')]) {
    if (existsSync(join(repo, dir)) && !existsSync(join(worktree, dir))) symlinkSync(join(repo, dir), join(worktree, dir))
  }
  for (let pair = 1; pair <= pairs; pair++) {
    for (const [side, cwd] of [
      ['before', worktree],
      ['after', repo],
    ] as const) {
      process.stderr.write(`\n== pair ${pair}/${pairs}, ${side} (${side === 'before' ? rev : 'this checkout'})\n`)
      const got = await run(side, cwd, pair)
      rows[side].push(got)
      process.stderr.write(`-- ${side} ${pair}: ${got.map((r) => `${r.source}: ${show(r)}`).join('; ') || 'no summary rows'}\n`)
    }
  }
} finally {
  git('worktree', 'remove', '--force', worktree)
  rmSync(tmp, { recursive: true, force: true })
}

const sources = [...new Set([...rows.before, ...rows.after].flat().map((r) => r.source))]
const pick = (side: Side, source: string, f: (r: SummaryRow) => number | undefined) =>
  rows[side].flatMap((run) => run.filter((r) => r.source === source).map(f)).filter((x): x is number => x !== undefined)
console.log(`\n## ${script} ${args.join(' ')}: ${rev} (before) against this checkout (after), ${pairs} alternating pairs, medians\n`)
console.log('| source | ratio before | ratio after | CPU us/event before: gateway + hosts | after | baseline CPU before / after |')
console.log('| --- | --- | --- | --- | --- | --- |')
for (const s of sources) {
  const m = (side: Side, f: (r: SummaryRow) => number | undefined) => medianOf(pick(side, s, f))
  const cpu = (side: Side) => {
    const h = m(side, (r) => r.cpuHosts)
    return `${us(m(side, (r) => r.cpuGateway))}${h === undefined ? '' : ` + ${us(h)}`}`
  }
  const ratio = (side: Side) => {
    const r = m(side, (x) => x.ratio)
    return r === undefined ? '-' : `${fmt(r)}x`
  }
  console.log(
    `| ${s} | ${ratio('before')} | ${ratio('after')} | ${cpu('before')} | ${cpu('after')} | ${us(m('before', (r) => r.cpuBaseline))} / ${us(m('after', (r) => r.cpuBaseline))} |`,
  )
}
