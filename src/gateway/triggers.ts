/**
 * Trigger bindings: one connector per function, its ConnectorContext (deliver, invoke, flow,
 * state, health, HTTP routes) and its start and stop.
 */
import { timerSkipChannel } from '../channels.js'
import { SluiceError, toInfo } from '../errors.js'
import { asLogger } from '../log.js'
import { reportsSkips, type Connector, type ConnectorContext } from '../sdk/index.js'
import type { GatewayParts } from './assembly.js'
import type { FunctionRoutes } from './function-routes.js'
import type { FunctionUnit } from './function-unit.js'
import { connectorState } from '../store/connector-state.js'

/** A function's running (or starting) trigger. */
export interface TriggerBinding {
  readonly fn: string
  readonly kind: string
  readonly connection?: string
  readonly connector: Connector
  /** What /admin/health reports; set by the connector through ctx.setHealth. */
  health: { up: boolean; detail?: string }
  /** Aborted when the trigger stops: ends its context's signal. */
  readonly abort: AbortController
}

/**
 * Creates the unit's connector, records it as `unit.trigger` and starts it. Rejects with the
 * connector's coded error (SLUICE_ERR_CONNECTOR_START by default) naming the function.
 */
export async function startTrigger(parts: GatewayParts, unit: FunctionUnit, routes: FunctionRoutes): Promise<TriggerBinding> {
  const { name: fnName, config: fn } = unit
  const def = parts.defs.get(fn.trigger.kind)
  if (!def) throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER', `trigger kind ${fn.trigger.kind} is not available`, { context: { function: fnName } })
  const conn = fn.trigger.connection ? parts.config.connections[fn.trigger.connection] : undefined
  const connector = def.createTrigger({
    functionName: fnName,
    trigger: fn.trigger.options,
    maxBacklog: fn.maxBacklog,
    instanceId: parts.instance.id,
    ...(fn.trigger.connection ? { connectionName: fn.trigger.connection } : {}),
    ...(conn ? { connection: conn.options } : {}),
  })
  if (reportsSkips(connector)) {
    connector.onSkipped((at) => timerSkipChannel.publish({ gateway: parts.id, function: fnName, scheduledAt: at.toISOString() }))
  }
  const binding: TriggerBinding = {
    fn: fnName,
    kind: fn.trigger.kind,
    ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}),
    connector,
    health: { up: false },
    abort: new AbortController(),
  }
  unit.trigger = binding
  const log = asLogger(parts.log).child({ function: fnName, trigger: fn.trigger.kind, ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}) })
  const ctx = connectorContext(parts, binding, routes, log)
  if (!def.http) delete ctx.http
  try {
    await connector.start(ctx)
  } catch (e) {
    const info = toInfo(e, 'SLUICE_ERR_CONNECTOR_START')
    throw new SluiceError(info.code, `function ${fnName}: ${fn.trigger.kind} trigger did not start: ${info.message}`, { cause: e, context: { function: fnName } })
  }
  if (!binding.health.detail) binding.health.up = true
  return binding
}

/** Stops a trigger: aborts its signal, removes its HTTP routes, stops the connector. Idempotent. */
export async function stopTrigger(binding: TriggerBinding, routes: FunctionRoutes): Promise<void> {
  binding.abort.abort()
  routes.remove(binding.fn)
  await binding.connector.stop()
}

function connectorContext(parts: GatewayParts, binding: TriggerBinding, routes: FunctionRoutes, log: ConnectorContext['log']): ConnectorContext {
  const { router, store } = parts
  const fnName = binding.fn
  const scope = `${binding.kind}:${fnName}`
  return {
    signal: binding.abort.signal,
    log,
    deliver: (events) => router.deliver(fnName, events),
    invoke: (events, o) => router.invoke(fnName, events, o),
    flow: router.flow(fnName),
    state: connectorState(store, scope),
    setHealth: (up, detail) => {
      binding.health = detail === undefined ? { up } : { up, detail }
    },
    http: { route: (def) => routes.add(fnName, def) },
  }
}
