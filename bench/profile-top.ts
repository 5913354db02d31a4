/**
 * The top entries of V8 CPU profiles (from --cpu-prof, SLUICE_HOST_CPU_PROF or
 * SLUICE_BENCH_PROFILE) by self time, as a Markdown table: what bench/README.md quotes.
 *
 *   node bench/profile-top.ts <file.cpuprofile>... [--top=15]
 *
 * Several files are added up (e.g. every worker host of a run). Idle and program time are left out
 * of the percentages; "(garbage collector)" is kept.
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}
interface Profile {
  nodes: Node[]
  samples?: number[]
  timeDeltas?: number[]
}

const args = process.argv.slice(2)
const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 15)
const files = args.filter((a) => !a.startsWith('--'))
const self = new Map<string, number>()
let total = 0
for (const f of files) {
  const p = JSON.parse(readFileSync(f, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const samples = p.samples ?? []
  const deltas = p.timeDeltas ?? []
  for (let i = 0; i < samples.length; i++) {
    const n = byId.get(samples[i] as number)
    if (!n) continue
    const name = n.callFrame.functionName || '(anonymous)'
    if (name === '(idle)' || name === '(program)') continue
    const where = n.callFrame.url ? ` ${basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : ''
    const key = `${name}${where}`
    const us = deltas[i + 1] ?? deltas[i] ?? 0
    self.set(key, (self.get(key) ?? 0) + us)
    total += us
  }
}
console.log(`| function | self % | self ms |\n| --- | --- | --- |`)
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`| ${k.replace(/\|/g, '\\|')} | ${((100 * us) / total).toFixed(1)} | ${(us / 1000).toFixed(0)} |`)
}
console.log(`\n${(total / 1000).toFixed(0)} ms of samples (idle and program excluded) in ${files.length} file(s)`)
