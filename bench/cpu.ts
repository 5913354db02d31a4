/** CPU time of processes, for the per-event CPU figures every benchmark reports. */
import { readFileSync } from 'node:fs'

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
