/** Messages between the gateway (SandboxPool) and a worker-host process, over Node IPC. */
import type { ErrorInfo } from '../errors.js'
import type { LogLine } from '../sdk/index.js'

/** Limits enforced inside every isolate (and checked again in the host). */
export const LIMITS = {
  /** Return value plus outputs of one invocation, as JSON (the AWS Lambda sync payload limit). */
  resultBytes: 6 * 1024 * 1024,
  logLines: 1000,
  logLineChars: 8192,
} as const

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
