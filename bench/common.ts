import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'

export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

export function summary(samples: number[]): { n: number; p50: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b)
  return { n: s.length, p50: percentile(s, 0.5), p99: percentile(s, 0.99), mean: s.reduce((a, b) => a + b, 0) / s.length }
}

export const fmt = (n: number, digits = 2) => n.toFixed(digits)

/** The middle value (the upper one of the two middle values for an even count); `xs` must not be empty. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

/** Starts a gateway from YAML and files in a temp folder, logging only warnings to stderr. */
export async function benchGateway(yaml: string, files: Record<string, string>): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'))
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true })
    writeFileSync(join(dir, rel), text)
  }
  const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
  return Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('warn', process.stderr as never) })
}

/** A progress line on stderr, rewritten in place. */
export function progress(label: string, done: number, total: number): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${label}: ${done}/${total}   `)
  else if (done === total || done % Math.max(1, Math.floor(total / 4)) === 0) process.stderr.write(`${label}: ${done}/${total}\n`)
}

/** The function every throughput benchmark runs: the demo's kind of work on a telemetry batch
 * (count low batteries, aggregate per station). */
export const TELEMETRY_FN = `export default async function (events) {
  const perStation = {}
  let low = 0
  for (const e of events) {
    const b = e.body
    if (b.battery < 15) low++
    const s = perStation[b.station] ?? (perStation[b.station] = { n: 0, speed: 0 })
    s.n++
    s.speed += b.speed
  }
  return { low, stations: Object.keys(perStation).length }
}`
