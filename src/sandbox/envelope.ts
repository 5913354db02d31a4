import type { ErrorCode, ErrorInfo } from '../errors.js'
import type { LogLine } from '../sdk/index.js'
import { LIMITS, type RunPayload } from './protocol.js'

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
        msg: String(l.msg).slice(0, LIMITS.logLineChars + 32),
        time: typeof l.time === 'number' ? l.time : Date.now(),
      })
    }
  }
  if (typeof env.dropped === 'number' && env.dropped > 0) logs.push({ level: 'warn', msg: `${env.dropped} log lines dropped (limit ${LIMITS.logLines} per invocation)`, time: Date.now() })
  if (env.ok === true) {
    const outputs: RunPayload['outputs'] = []
    for (const o of Array.isArray(env.outputs) ? (env.outputs as unknown[]) : []) {
      if (Array.isArray(o) && typeof o[0] === 'string') outputs.push({ name: o[0], value: o[1] })
    }
    return { ok: true, value: env.value, outputs, logs }
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
  return { ok: false, error, outputs: [], logs }
}
