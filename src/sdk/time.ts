let lastMs = Number.NaN
let lastIso = ''

/**
 * `new Date().toISOString()`, formatted once per millisecond: a backlog brings many messages (and
 * a busy route many requests) within one millisecond, and formatting dates showed in profiles.
 */
export function nowIso(): string {
  const ms = Date.now()
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}
