/**
 * Trigger bindings: one connector per function, its ConnectorContext (deliver, invoke, flow,
 * state, health, HTTP routes), its start, its retries when its broker is unreachable, and its stop.
 *
 * Degraded start (issue 9): a trigger whose connection cannot be reached at start does not take
 * the gateway down. Its first attempt fails, the gateway starts without it, reports it down in
 * /admin/health, and a fresh connector is tried again with bounded, jittered exponential backoff
 * until the broker answers. A connection with `required: true`, a trigger without a connection,
 * and an error that retrying cannot fix (retriable: false, e.g. refused credentials or a missing
 * queue) still fail the start.
 */
import { timerSkipChannel } from '../channels.js'
import { SluiceError, toInfo, type ErrorInfo } from '../errors.js'
import { asLogger } from '../log.js'
import { backoffDelay, reportsSkips, type Connector, type ConnectorContext, type Logger } from '../sdk/index.js'
import { connectorState, leaseOwner } from '../store/connector-state.js'
import type { GatewayParts } from './assembly.js'
import type { FunctionRoutes } from './function-routes.js'
import type { FunctionUnit } from './function-unit.js'

/** Delays between start attempts of a trigger whose broker is unreachable. */
export const START_RETRY = { backoff: 'exponential', initialDelayMs: 1000, maxDelayMs: 30_000 } as const

/** A function's trigger: the current connector and its state. */
export interface TriggerBinding {
  readonly fn: string
  readonly kind: string
  readonly connection?: string
  /** The connector of the latest start attempt. */
  connector: Connector
  /** What /admin/health reports; set by the connector through ctx.setHealth, or by the retry loop. */
  health: { up: boolean; detail?: string }
  /** While the start is being retried: the failed attempts so far and the last error. */
  retry?: { attempts: number; error: ErrorInfo; nextAttemptAt: string }
  /** Aborted when the trigger stops: ends its context's signal and the retry loop. */
  readonly abort: AbortController
  /** The start attempt in flight (for stop to wait on). */
  attempt?: Promise<unknown>
  timer?: NodeJS.Timeout
}

export interface StartTriggerOptions {
  /** Overrides START_RETRY (tests). */
  retry?: { initialDelayMs: number; maxDelayMs: number }
}

/**
 * Creates the unit's trigger, records it as `unit.trigger` and starts it. Resolves once the
 * connector is started, or once its first attempt failed with a retriable error on a connection
 * that is not `required` (retries then go on in the background). Rejects with the connector's
 * coded error (SLUICE_ERR_CONNECTOR_START by default) naming the function otherwise.
 */
export async function startTrigger(parts: GatewayParts, unit: FunctionUnit, routes: FunctionRoutes, opts: StartTriggerOptions = {}): Promise<TriggerBinding> {
  const { name: fnName, config: fn } = unit
  const def = parts.defs.get(fn.trigger.kind)
  if (!def) throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER', `trigger kind ${fn.trigger.kind} is not a known kind`, { context: { function: fnName } })
  const conn = fn.trigger.connection ? parts.config.connections[fn.trigger.connection] : undefined
  const create = (): Connector => {
    const c = def.createTrigger({
      functionName: fnName,
      trigger: fn.trigger.options,
      maxBacklog: fn.maxBacklog,
      instanceId: parts.instance.id,
      ...(fn.trigger.connection ? { connectionName: fn.trigger.connection } : {}),
      ...(conn ? { connection: conn.options } : {}),
    })
    if (reportsSkips(c)) c.onSkipped((at) => timerSkipChannel.publish({ gateway: parts.id, function: fnName, scheduledAt: at.toISOString() }))
    return c
  }
  const binding: TriggerBinding = {
    fn: fnName,
    kind: fn.trigger.kind,
    ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}),
    connector: create(),
    health: { up: false },
    abort: new AbortController(),
  }
  unit.trigger = binding
  const log = asLogger(parts.log).child({ function: fnName, trigger: fn.trigger.kind, ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}) })
  const attempt = async (): Promise<void> => {
    const ctx = connectorContext(parts, binding, binding.connector, routes, log)
    if (!def.http) delete ctx.http
    try {
      await binding.connector.start(ctx)
    } catch (e) {
      const info = toInfo(e, 'SLUICE_ERR_CONNECTOR_START')
      throw new SluiceError(info.code, `function ${fnName}: ${fn.trigger.kind} trigger did not start: ${info.message}`, {
        cause: e,
        retriable: info.retriable,
        context: { function: fnName, ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}) },
      })
    }
    if (!binding.health.detail) binding.health = { up: true }
  }

  const first = attempt()
  binding.attempt = first
  try {
    await first
    return binding
  } catch (e) {
    const info = toInfo(e, 'SLUICE_ERR_CONNECTOR_START')
    if (conn === undefined || conn.required === true || !info.retriable || binding.abort.signal.aborted) throw e
    await binding.connector.stop({ force: true }).catch(() => undefined)
    scheduleRetry(binding, info, 1, { create, attempt, log, policy: { ...START_RETRY, ...opts.retry } })
    return binding
  }
}

interface RetryDeps {
  create(): Connector
  attempt(): Promise<void>
  log: Logger
  policy: { backoff: 'exponential'; initialDelayMs: number; maxDelayMs: number }
}

/** After `failures` failed attempts: marks the trigger down, logs once, and tries again later. */
function scheduleRetry(binding: TriggerBinding, error: ErrorInfo, failures: number, d: RetryDeps): void {
  if (binding.abort.signal.aborted) return
  const delay = backoffDelay(d.policy, failures)
  const nextAttemptAt = new Date(Date.now() + delay).toISOString()
  binding.retry = { attempts: failures, error, nextAttemptAt }
  binding.health = { up: false, detail: `${error.code}: ${error.message} (attempt ${failures} failed; retrying in ${Math.ceil(delay / 1000)} s)` }
  d.log.warn(
    { err: { code: error.code, message: error.message }, attempt: failures, retryInMs: delay },
    'trigger down: its connection cannot be reached; the gateway runs without it and retries',
  )
  binding.timer = setTimeout(() => {
    binding.timer = undefined
    if (binding.abort.signal.aborted) return
    binding.connector = d.create()
    const run = d.attempt().then(
      () => {
        if (binding.abort.signal.aborted) return binding.connector.stop()
        delete binding.retry
        d.log.info({ attempts: failures + 1 }, 'trigger up: its connection answered')
        return undefined
      },
      async (e: unknown) => {
        await binding.connector.stop({ force: true }).catch(() => undefined)
        scheduleRetry(binding, toInfo(e, 'SLUICE_ERR_CONNECTOR_START'), failures + 1, d)
      },
    )
    binding.attempt = run.catch(() => undefined)
  }, delay)
  binding.timer.unref()
}

/** Stops a trigger: ends its retries, aborts its signal, removes its HTTP routes, stops the connector. Idempotent. */
export async function stopTrigger(binding: TriggerBinding, routes: FunctionRoutes): Promise<void> {
  binding.abort.abort()
  if (binding.timer) clearTimeout(binding.timer)
  routes.remove(binding.fn)
  // A start attempt in flight finishes first (it checks the signal and stops what it started).
  await binding.attempt?.catch(() => undefined)
  await binding.connector.stop()
}

function connectorContext(parts: GatewayParts, binding: TriggerBinding, connector: Connector, routes: FunctionRoutes, log: Logger): ConnectorContext {
  const { router, store } = parts
  const fnName = binding.fn
  const scope = `${binding.kind}:${fnName}`
  return {
    signal: binding.abort.signal,
    log,
    deliver: (events, onOutcome) => router.deliver(fnName, events, onOutcome),
    invoke: (events, o) => router.invoke(fnName, events, o),
    flow: router.flow(fnName),
    state: connectorState(store, scope, leaseOwner(parts.instance.id)),
    // Only the current connector reports: a failed attempt's late callbacks are ignored. While
    // the start is retried, a down report keeps saying why the last attempt failed.
    setHealth: (up, detail) => {
      if (binding.connector !== connector) return
      const r = binding.retry
      const d =
        !up && r
          ? `${r.error.code}: ${r.error.message} (${r.attempts} start attempt${r.attempts === 1 ? '' : 's'} failed; now ${detail ?? 'trying again'})`
          : detail
      binding.health = d === undefined ? { up } : { up, detail: d }
    },
    http: { route: (def) => routes.add(fnName, def) },
  }
}
