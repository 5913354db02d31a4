import { pino, type DestinationStream, type Logger as Pino } from 'pino'
import type { Logger } from './sdk/index.js'

export type { Pino }

/**
 * The gateway's structured logger: pino JSON lines on stdout (or `destination`), with error
 * objects under `err`. Fastify shares it, so request logs and gateway logs are one stream.
 * `pid` is reserved for the process that wrote the line: a field naming another process uses its
 * own name (`hostPid` for a worker host), never `pid` (pino would write the key twice).
 */
export function createLogger(level: string, destination?: DestinationStream): Pino {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  )
}

/** pino's Logger satisfies the SDK's Logger; this documents (and type-checks) that. */
export function asLogger(p: Pino): Logger {
  return p as unknown as Logger
}
