/**
 * One row per benchmark for `npm run bench` (bench/run-all.ts): when SLUICE_BENCH_SUMMARY names a
 * file, each benchmark appends its row there as a JSON line.
 */
import { appendFileSync } from 'node:fs'

export interface SummaryRow {
  /** What was measured, e.g. "MQTT drain". */
  source: string
  /** sluice's rate over its baseline's in the same run (events or requests per second). */
  ratio: number
  /** The baseline the ratio is against. */
  baseline: string
  /** CPU time per event in the gateway process (us), and in its worker hosts. */
  cpuGateway?: number
  cpuHosts?: number
  /** The baseline's CPU per event (us), when measured. */
  cpuBaseline?: number
  /** The whole machine's CPU per event (us, cpu.ts machineCpu): sluice's case, and its baseline's. */
  machine?: number
  machineBaseline?: number
  /** The ratio sluice would reach with every core busy at its machine CPU per event (cpu.ts ceilingRate). */
  ceiling?: number
  note?: string
}

export function recordSummary(row: SummaryRow): void {
  const file = process.env.SLUICE_BENCH_SUMMARY
  if (file) appendFileSync(file, `${JSON.stringify(row)}\n`)
}
