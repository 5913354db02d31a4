import type { ErrorCode, ErrorInfo } from '../errors.js'
import type { LogLine } from '../sdk/index.js'
import { LIMITS, type LogsDropped, type RunPayload } from './protocol.js'

const info = (code: ErrorCode, message: string, retriable: boolean): ErrorInfo => ({ code, message, retriable })

const LEVELS = new Set(['debug', 'info', 'warn', 'error'])

/** Parses and checks the envelope the isolate returned: it is untrusted data. */
export function parseEnvelope(raw: unknown, fn: string): RunPayload {
  const invalid = (why: string): RunPayload => ({
    ok: false,
    error: info('SLUICE_ERR_FUNCTION_RESULT_INVALID', `function ${fn}: ${why}`, false),
    outputs: [],
    logs: [],
  })
  if (typeof raw !== 'string') return invalid('the sandbox returned no result envelope')
  if (raw.length > LIMITS.resultBytes + 2 * 1024 * 1024) return invalid('the result envelope is larger than the result limit')
  let env: { ok?: unknown; value?: unknown; error?: Record<string, unknown>; outputs?: unknown; logs?: unknown; dropped?: unknown }
  try {
    env = JSON.parse(raw) as typeof env
  } catch {
    return invalid('the result envelope is not JSON')
  }
  const logs: LogLine[] = []
  if (Array.isArray(env.logs)) {
    for (const l of env.logs as Array<Record<string, unknown>>) {
      if (typeof l !== 'object' || l === null) continue
      logs.push({
        level: LEVELS.has(l.level as string) ? (l.level as LogLine['level']) : 'info',
        msg: String(l.msg).slice(0, LIMITS.logLineBytes + 32),
        time: typeof l.time === 'number' ? l.time : Date.now(),
      })
    }
  }
  const logsDropped = droppedOf(env.dropped)
  if (logsDropped) logs.push({ level: 'warn', msg: droppedMessage(logsDropped), time: Date.now() })
  if (env.ok === true) {
    const outputs: RunPayload['outputs'] = []
    for (const o of Array.isArray(env.outputs) ? (env.outputs as unknown[]) : []) {
      if (Array.isArray(o) && typeof o[0] === 'string') outputs.push({ name: o[0], value: o[1] })
    }
    return logsDropped ? { ok: true, value: env.value, outputs, logs, logsDropped } : { ok: true, value: env.value, outputs, logs }
  }
  const e = env.error ?? {}
  const code = typeof e.code === 'string' && e.code.startsWith('SLUICE_ERR_FUNCTION_') ? (e.code as ErrorCode) : 'SLUICE_ERR_FUNCTION_THREW'
  const name = typeof e.name === 'string' ? e.name : 'Error'
  const message = typeof e.message === 'string' ? e.message : 'unknown error'
  const error: ErrorInfo = {
    code,
    message: code === 'SLUICE_ERR_FUNCTION_THREW' ? `${name}: ${message}` : message,
    retriable: code === 'SLUICE_ERR_FUNCTION_THREW',
  }
  if (typeof e.stack === 'string') error.context = { function: fn, stack: e.stack }
  return logsDropped ? { ok: false, error, outputs: [], logs, logsDropped } : { ok: false, error, outputs: [], logs }
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0)

function droppedOf(d: unknown): LogsDropped | undefined {
  if (typeof d !== 'object' || d === null) return undefined
  const r = d as Record<string, unknown>
  const out: LogsDropped = { droppedLines: count(r.lines), truncated: count(r.truncated), droppedChars: count(r.chars) }
  return out.droppedLines > 0 || out.truncated > 0 ? out : undefined
}

const kib = (n: number) => `${Math.round(n / 1024)} KiB`

/** The warning line appended to logs the isolate cut, so every surface that shows logs says so. */
export function droppedMessage(d: LogsDropped): string {
  const parts: string[] = []
  if (d.droppedLines > 0) parts.push(`${d.droppedLines} log line${d.droppedLines === 1 ? '' : 's'} dropped`)
  if (d.truncated > 0) parts.push(`${d.truncated} line${d.truncated === 1 ? '' : 's'} truncated`)
  return `${parts.join(', ')} (${d.droppedChars} characters not kept; limits per invocation: ${kib(LIMITS.logBytes)} of logs, ${kib(LIMITS.logLineBytes)} per line, ${LIMITS.logLines} lines)`
}
