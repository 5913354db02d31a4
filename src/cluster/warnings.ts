/**
 * Start warnings for several live instances: MQTT triggers that two instances run without `share`,
 * and functions relying on per-key order from a source that cannot keep it across instances.
 */
import type { GatewayConfig } from '../config/schema.js'
import type { ClusterWarning, InstanceReport, UnsharedTrigger } from './types.js'

export const ORDER_DOCS = 'docs/operations.md#order-with-several-instances'
export const SHARE_DOCS = 'connectors/mqtt/README.md#several-gateway-instances'

/** MQTT triggers of `config` without `share` (what the registry publishes as `unshared`). */
export function unsharedTriggers(config: Pick<GatewayConfig, 'functions'>): UnsharedTrigger[] {
  const out: UnsharedTrigger[] = []
  for (const fn of Object.values(config.functions)) {
    const o = fn.trigger.options
    if (fn.trigger.kind === 'mqtt' && o.share === undefined)
      out.push({ function: fn.name, connection: String(o.connection ?? fn.trigger.connection ?? ''), topic: String(o.topic) })
  }
  return out
}

/** Why `fn`'s source cannot keep per-key order across instances, or undefined when it can. */
function orderProblem(kind: string, o: Record<string, unknown>): string | undefined {
  if (kind === 'mqtt' && typeof o.share === 'string')
    return `MQTT shared subscription $share/${o.share}: round-robin brokers (Mosquitto) spread one topic over the instances`
  if (kind === 'amqp') {
    const args = (o.declare as { arguments?: Record<string, unknown> } | undefined)?.arguments
    if (args?.['x-single-active-consumer'] !== true)
      return `AMQP queue ${String(o.queue)} without x-single-active-consumer: competing consumers run one queue's messages on several instances at once`
  }
  return undefined
}

/**
 * The warnings that apply while `others` (live instances besides this one) run. Empty with no
 * other live instance.
 */
export function clusterWarnings(
  config: Pick<GatewayConfig, 'functions'>,
  self: Pick<InstanceReport, 'unshared'>,
  others: ReadonlyArray<{ id: string; report: Pick<InstanceReport, 'unshared'> }>,
): ClusterWarning[] {
  if (others.length === 0) return []
  const out: ClusterWarning[] = []
  for (const u of self.unshared) {
    const peers = others.filter((o) => o.report.unshared.some((p) => p.function === u.function && p.topic === u.topic)).map((o) => o.id)
    if (peers.length === 0) continue
    out.push({
      code: 'SLUICE_ERR_CLUSTER_MQTT_UNSHARED',
      function: u.function,
      docs: SHARE_DOCS,
      message: `function ${u.function}: this instance and ${peers.join(', ')} run its MQTT trigger on ${u.topic} without share, so each receives every message (or, with one fixed clientId, they take the session from each other): set share: <group> on the trigger`,
    })
  }
  for (const fn of Object.values(config.functions)) {
    if (fn.orderKey === 'none') continue
    const why = orderProblem(fn.trigger.kind, fn.trigger.options)
    if (!why) continue
    out.push({
      code: 'SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT',
      function: fn.name,
      docs: ORDER_DOCS,
      message: `function ${fn.name} relies on per-key order (orderKey: ${fn.orderKey}) but ${others.length + 1} instances are live and its source cannot keep that order across them (${why}); see ${ORDER_DOCS}, or set orderKey: none`,
    })
  }
  return out
}
