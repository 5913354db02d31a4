/** CPU time of processes, for the per-event CPU figures every benchmark reports. */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

/** CPU time (user + system, us) of this process. */
export function selfCpu(): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** CPU time (user + system, us) of other processes, from /proc (Linux, 10 ms resolution; 0 elsewhere). */
export function cpuOf(pids: number[]): number {
  let us = 0
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
      // utime and stime, fields 14 and 15 of stat, in clock ticks (100 per second).
      us += (Number(fields[11]) + Number(fields[12])) * 10_000
    } catch {
      // gone meanwhile
    }
  }
  return us
}

/**
 * CPU time (us) every core of the machine has spent busy so far (user, nice, system, irq and
 * softirq from /proc/stat; not idle, iowait or time the hypervisor stole), in 10 ms ticks (Linux;
 * 0 elsewhere). Taken around a drain it gives the machine's CPU per event, broker and load
 * generator included: the budget a case spends on this machine's cores, whichever process spent it.
 */
export function machineCpu(): number {
  try {
    const f = (readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '').trim().split(/\s+/)
    // cpu user nice system idle iowait irq softirq steal ...
    const busy = Number(f[1]) + Number(f[2]) + Number(f[3]) + Number(f[6]) + Number(f[7])
    return Number.isFinite(busy) ? busy * 10_000 : 0
  } catch {
    return 0
  }
}

/** Busy cores of this machine (its CPU count, from os.availableParallelism). */
export const CORES = availableParallelism()

/**
 * The rate a case could reach with every core busy at its machine CPU per event (us): what a
 * cheaper pipeline must bring down to raise the ceiling (bench/README.md, "CPU budget").
 */
export const ceilingRate = (machineUs: number): number => (machineUs > 0 ? (CORES * 1e6) / machineUs : Number.NaN)
