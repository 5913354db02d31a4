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
  /** The bundle is no longer used (no function's current version, no instance): drop it. */
  | { t: 'forget-code'; hash: string }
  | ({ t: 'create' } & InstanceSpec)
  | { t: 'run'; id: number; inst: number; invocationId: string; timeoutMs: number; cpuTimeMs: number }
  | { t: 'destroy'; inst: number }
  | { t: 'prewarm'; memoryMb: number[]; count: number }
  | { t: 'ping'; id: number }
  | HttpToHost

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
  | { t: 'pong'; id: number; instances: number; rss: number; bundles: number }
  /** A pinned instance died in a direct HTTP run (timeout, memory limit). */
  | { t: 'lost'; inst: number }
  | HttpFromHost

/** How a worker host's own HTTP server parses and times requests: the gateway's `http` settings. */
export interface HostHttpConfig {
  bodyLimit: number
  trustProxy?: boolean | string
  requestTimeoutMs: number
  keepAliveTimeoutMs: number
  logLevel: string
}

/** A function route a worker host serves on one of its instances (see src/gateway/direct-http.ts). */
export interface HttpPin {
  pin: number
  inst: number
  fn: string
  /** Bundle hash of the instance's code (reports carry it, to map error stacks). */
  hash: string
  methods: string[]
  url: string
  auth: 'anonymous' | 'function'
  source: string
  wildcard?: string
  /** SHA-256 digests of the function's keys, and of admin.key (which opens every route). */
  keys: string[]
  adminHash?: string
  timeoutMs: number
  cpuTimeMs: number
  /** Requests of this pin running or queued at once; more are refused as overloaded. */
  maxBacklog: number
}

/**
 * A direct invocation as the gateway records it (src/router/report.ts), with its result's preview
 * (only the newest of a function in each group of reports have one: the rest leave the recent list
 * at once).
 */
export interface DirectReport {
  fn: string
  invocationId: string
  ok: boolean
  durationMs: number
  error?: ErrorInfo
  logs: LogLine[]
  result?: string
  /** Bundle hash of the instance's code, for mapping an error's stack. */
  hash: string
}

/** Direct HTTP messages, gateway -> host. `http-forwarded` carries the reply body (base64) as payload. */
export type HttpToHost =
  | { t: 'http-config'; config: HostHttpConfig }
  | ({ t: 'http-pin' } & HttpPin)
  | { t: 'http-keys'; fn: string; keys: string[] }
  | { t: 'http-unpin'; pin: number }
  | { t: 'http-flush'; id: number }
  | { t: 'http-close'; id: number }
  | { t: 'http-forwarded'; id: number; status: number; headers: Record<string, string | string[]> }
  | { t: 'http-published'; id: number; error?: ErrorInfo }

/**
 * Direct HTTP messages, host -> gateway. `http-reports` carries a JSON array of DirectReport;
 * `http-forward` the request body (base64); `http-outputs` the outputs, as payload.
 */
export type HttpFromHost =
  | { t: 'http-pinned'; pin: number; error?: ErrorInfo }
  | { t: 'http-reports' }
  | { t: 'http-flushed'; id: number }
  | { t: 'http-closed'; id: number }
  | { t: 'http-forward'; id: number; method: string; url: string; headers: Record<string, string | string[] | undefined>; remoteAddress: string }
  /** What a direct invocation wrote to its outputs (JSON array of { name, value } as payload), for the gateway to publish. */
  | { t: 'http-outputs'; id: number; fn: string }

/** Over Node's IPC channel, with the connection's socket as the handle: its first bytes (base64). */
export interface HttpConnMessage {
  t: 'http-conn'
  head: string
}

/** File descriptor of the frame channel in the worker host (stdio slot 4). */
export const FRAME_FD = 4
