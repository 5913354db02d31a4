/**
 * The last line of defence of `sluice start`: an error that escapes everything else (an unhandled
 * promise rejection, an uncaught exception) is logged with its context and the gateway drains, as
 * on SIGTERM, instead of dying mid-acknowledgement. Connectors stop taking events, in-flight
 * outcomes finish and are acknowledged, then the process exits non-zero so a supervisor restarts
 * it and someone looks at the log. Nothing on the event path should ever get here (issue 9).
 */
import { hasCode } from './errors.js'

/** The subset of a pino logger the guard writes with. */
export interface GuardLogger {
  error(obj: object, msg?: string): void
  fatal?(obj: object, msg?: string): void
}

export interface ProcessGuardOptions {
  log: GuardLogger
  /** Starts the graceful drain (the SIGTERM path); resolves once drained. Called once. */
  drain: () => Promise<unknown>
  /** Exit code after the drain (default 1: the process did fail). */
  exitCode?: number
  /** Exits when the drain has not finished by then (default 60 s). */
  deadlineMs?: number
  /** Ends the process (default process.exit); tests pass their own. */
  exit?: (code: number) => void
}

/** What a thrown value or rejection reason says, for the log line. */
function describe(err: unknown): { code: string; message: string; stack?: string; name?: string } {
  try {
    const code = hasCode(err) ? err.code : typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'SLUICE_ERR_INTERNAL'
    if (err instanceof Error) return { code, name: err.name, message: err.message, ...(err.stack ? { stack: err.stack } : {}) }
    return { code, message: `a non-Error value: ${String(err)}` }
  } catch {
    return { code: 'SLUICE_ERR_INTERNAL', message: 'an error that cannot be described' }
  }
}

/**
 * Installs `unhandledRejection` and `uncaughtException` handlers on this process. The first
 * fatal error logs and starts the drain; later ones during the drain are logged only. Returns a
 * function that removes the handlers.
 */
export function installProcessGuard(opts: ProcessGuardOptions): () => void {
  const exit = opts.exit ?? ((code: number) => process.exit(code))
  let draining = false
  const fatal = (err: unknown, origin: 'unhandledRejection' | 'uncaughtException') => {
    const info = describe(err)
    const fields = { component: 'process', origin, err: info, draining }
    try {
      opts.log.error(fields, draining ? `${origin} while draining: still draining` : `${origin}: draining in-flight work and exiting`)
    } catch {
      process.stderr.write(`sluice: ${origin}: ${info.code} ${info.message}\n`)
    }
    if (draining) return
    draining = true
    const deadline = setTimeout(() => exit(opts.exitCode ?? 1), opts.deadlineMs ?? 60_000)
    deadline.unref()
    let drained: Promise<unknown>
    try {
      drained = Promise.resolve(opts.drain())
    } catch (e) {
      drained = Promise.reject(e)
    }
    drained.then(
      () => {
        clearTimeout(deadline)
        exit(opts.exitCode ?? 1)
      },
      (e: unknown) => {
        clearTimeout(deadline)
        try {
          opts.log.error({ component: 'process', err: describe(e) }, 'drain after a fatal error failed')
        } catch {
          // exiting anyway
        }
        exit(opts.exitCode ?? 1)
      },
    )
  }
  const onRejection = (reason: unknown) => fatal(reason, 'unhandledRejection')
  const onException = (err: unknown) => fatal(err, 'uncaughtException')
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  return () => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  }
}
