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

export type ToHost =
  | { t: 'code'; hash: string; code: string }
  | ({ t: 'create' } & InstanceSpec)
  | { t: 'run'; id: number; inst: number; events: string; invocationId: string; timeoutMs: number; cpuTimeMs: number }
  | { t: 'destroy'; inst: number }
  | { t: 'prewarm'; memoryMb: number[]; count: number }
  | { t: 'ping'; id: number }

/** What the isolate returned, parsed and checked by the host. */
export interface RunPayload {
  ok: boolean
  value?: unknown
  error?: ErrorInfo
  outputs: Array<{ name: string; value: unknown }>
  logs: LogLine[]
}

export type FromHost =
  | { t: 'ready'; pid: number; execArgv: string[] }
  | { t: 'created'; inst: number; ms: number; prewarmed: boolean; error?: ErrorInfo }
  | { t: 'result'; id: number; inst: number; payload: RunPayload; lost: boolean; cpuMs: number; ms: number }
  | { t: 'lost'; inst: number; error: ErrorInfo }
  | { t: 'pong'; id: number; instances: number; rss: number }
