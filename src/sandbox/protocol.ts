/** Messages between the gateway (SandboxPool) and a worker-host process, over Node IPC. */
import type { ErrorInfo } from '../errors.js'
import type { LogLine } from '../sdk/index.js'

/** Limits enforced inside every isolate (and checked again in the host). */
export const LIMITS = {
  /** Return value plus outputs of one invocation, as JSON (the AWS Lambda sync payload limit). */
  resultBytes: 6 * 1024 * 1024,
  /** Log lines kept per invocation; later lines are counted as dropped. */
  logLines: 1000,
  /**
   * Log bytes kept per invocation and per line, measured as the lines' JSON in UTF-8 (escapes
   * included, plus `logLineOverhead` per line for level and time), so logs never count against
   * `resultBytes`. A longer line is cut and marked `...[truncated]`; lines past the total are dropped.
   */
  logBytes: 64 * 1024,
  logLineBytes: 8 * 1024,
  logLineOverhead: 48,
} as const

/** What the isolate did not keep of an invocation's logs (see LIMITS). */
export interface LogsDropped {
  /** Lines dropped whole (past `logLines` or `logBytes`). */
  droppedLines: number
  /** Lines kept but cut to fit. */
  truncated: number
  /** Characters (UTF-16 code units, before escaping) of dropped lines and cut tails. */
  droppedChars: number
}

export interface InstanceSpec {
  inst: number
  fn: string
  hash: string
  memoryMb: number
  outputs: string[]
  /** Deadline for module-level code. */
  initTimeoutMs: number
}

/**
 * Gateway -> host. Sent over the frame channel (see channel.ts); `code` and `run` carry their
 * source or events JSON as the frame payload.
 */
export type ToHost =
  | { t: 'code'; hash: string }
  | ({ t: 'create' } & InstanceSpec)
  | { t: 'run'; id: number; inst: number; invocationId: string; timeoutMs: number; cpuTimeMs: number }
  | { t: 'destroy'; inst: number }
  | { t: 'prewarm'; memoryMb: number[]; count: number }
  | { t: 'ping'; id: number }

/** What the isolate returned, parsed and checked (by the gateway: it is untrusted data). */
export interface RunPayload {
  ok: boolean
  value?: unknown
  error?: ErrorInfo
  outputs: Array<{ name: string; value: unknown }>
  logs: LogLine[]
  /** Set when the log limits cut or dropped lines. */
  logsDropped?: LogsDropped
}

/**
 * Host -> gateway. A `result` without `error` carries the isolate's raw result envelope as the
 * frame payload. `ready` goes over Node's IPC channel (which also tells the host when the gateway
 * is gone); everything else over the frame channel.
 */
export type FromHost =
  | { t: 'ready'; pid: number; execArgv: string[] }
  | { t: 'created'; inst: number; ms: number; prewarmed: boolean; error?: ErrorInfo }
  | { t: 'result'; id: number; inst: number; lost: boolean; cpuMs: number; ms: number; error?: ErrorInfo }
  | { t: 'pong'; id: number; instances: number; rss: number }

/** File descriptor of the frame channel in the worker host (stdio slot 4). */
export const FRAME_FD = 4
