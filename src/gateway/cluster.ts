/**
 * The gateway's membership in the cluster registry (src/cluster): what it reports at each
 * heartbeat, and how it drains a dead instance's broker session through its own function
 * pipeline (the same router, retries, dead letters and ack rules as its own trigger).
 */
import { newIncarnation } from '../cluster/identity.js'
import { ClusterMember } from '../cluster/member.js'
import { TakeoverCoordinator, type SessionDrainer } from '../cluster/takeover.js'
import type { RecordedSession } from '../cluster/types.js'
import { unsharedTriggers } from '../cluster/warnings.js'
import type { ConnectionHealth } from '../http/admin.js'
import { asLogger } from '../log.js'
import { holdsSessions, type ConnectorContext } from '../sdk/index.js'
import { connectorState } from '../store/connector-state.js'
import type { GatewayState } from './admin-facade.js'
import type { GatewayParts } from './assembly.js'
import type { FunctionUnit } from './function-unit.js'

export interface ClusterWiring {
  parts: GatewayParts
  units: ReadonlyMap<string, FunctionUnit>
  state(): GatewayState
  url(): string
  connections(): ConnectionHealth[]
}

/** The sessions the units' running triggers hold. */
function sessions(units: ReadonlyMap<string, FunctionUnit>): RecordedSession[] {
  const out: RecordedSession[] = []
  for (const u of units.values()) {
    const b = u.trigger
    if (!b || !holdsSessions(b.connector)) continue
    for (const s of b.connector.sessions()) out.push({ ...s, function: b.fn, kind: b.kind, ...(b.connection ? { connection: b.connection } : {}) })
  }
  return out
}

/**
 * A drainer that takes a session over only for a function configured here with the same trigger
 * and connection, and only a shared one: without `share` every live instance receives every
 * message itself, so draining a dead one's copy would only run them twice.
 */
function drainer(w: ClusterWiring): SessionDrainer {
  const { parts } = w
  return (s) => {
    if (!s.shared) return undefined
    const unit = w.units.get(s.function)
    const fn = unit?.config
    const def = parts.defs.get(s.kind)
    if (!fn || !def?.takeOverSession || fn.trigger.kind !== s.kind || fn.trigger.connection !== s.connection) return undefined
    const conn = fn.trigger.connection ? parts.config.connections[fn.trigger.connection] : undefined
    const takeOver = def.takeOverSession.bind(def)
    return (signal) => {
      const ctx: ConnectorContext = {
        signal,
        log: asLogger(parts.log).child({
          function: fn.name,
          trigger: fn.trigger.kind,
          ...(fn.trigger.connection ? { connection: fn.trigger.connection } : {}),
        }),
        deliver: (events, onOutcome) => parts.router.deliver(fn.name, events, onOutcome),
        invoke: (events, o) => parts.router.invoke(fn.name, events, o),
        flow: parts.router.flow(fn.name),
        state: connectorState(parts.store, `${fn.trigger.kind}:${fn.name}`),
        setHealth: () => undefined,
      }
      const spec = {
        functionName: fn.name,
        trigger: fn.trigger.options,
        maxBacklog: fn.maxBacklog,
        instanceId: parts.instance.id,
        ...(fn.trigger.connection ? { connectionName: fn.trigger.connection } : {}),
        ...(conn ? { connection: conn.options } : {}),
      }
      return takeOver(spec, s, ctx)
    }
  }
}

export function createClusterMember(w: ClusterWiring): ClusterMember {
  const { parts } = w
  const log = asLogger(parts.log).child({ component: 'cluster', instance: parts.instance.id })
  const incarnation = newIncarnation()
  const takeover = new TakeoverCoordinator({
    store: parts.store,
    selfId: parts.instance.id,
    incarnation,
    expiryMs: parts.instance.expiryMs,
    log,
    drainer: drainer(w),
  })
  return new ClusterMember({
    store: parts.store,
    settings: parts.instance,
    incarnation,
    config: parts.config,
    unshared: unsharedTriggers(parts.config),
    log,
    takeover,
    report: () => {
      let backlog = 0
      let inflight = 0
      for (const name of w.units.keys()) {
        const r = parts.router.stats(name)
        backlog += r.backlog
        inflight += r.inflight
      }
      const url = w.url()
      return { state: w.state(), connections: w.connections(), backlog, inflight, sessions: sessions(w.units), ...(url ? { url } : {}) }
    },
  })
}
