/** What instances publish about themselves in the cluster registry and what GET /admin/instances answers. */
import type { ConnectionHealth } from '../http/admin.js'
import type { SourceSession } from '../sdk/index.js'

/** A broker session one of the instance's triggers holds (recorded so a live instance can drain it). */
export interface RecordedSession extends SourceSession {
  function: string
  kind: string
  connection?: string
}

/** An MQTT trigger without `share` (two instances running it both get every message). */
export interface UnsharedTrigger {
  function: string
  connection: string
  topic: string
}

/** The doc of an instance's registry row, rewritten at every heartbeat. */
export interface InstanceReport {
  version: string
  host: string
  pid: number
  startedAt: string
  /** Base URL of its HTTP server as it sees it. */
  url?: string
  state: 'starting' | 'up' | 'stopping' | 'stopped'
  connections: ConnectionHealth[]
  /** Events taken from sources and not finished, over all functions. */
  backlog: number
  /** Events being run now. */
  inflight: number
  sessions: RecordedSession[]
  unshared: UnsharedTrigger[]
  /** Set by the live instance that drained this (dead) instance's sessions. */
  takenOver?: { by: string; at: string; sessions: number; messages: number }
}

export interface ClusterWarning {
  code: 'SLUICE_ERR_CLUSTER_MQTT_UNSHARED' | 'SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT' | 'SLUICE_ERR_INSTANCE_DUPLICATE_ID'
  message: string
  function?: string
  /** Where the docs explain it. */
  docs?: string
}

export interface InstanceView extends Omit<InstanceReport, 'sessions' | 'unshared'> {
  id: string
  /** live: heartbeat within instance.expiryMs; expired: none since (dead or cut off); stopped: shut down. */
  status: 'live' | 'expired' | 'stopped'
  self: boolean
  lastHeartbeat: string
  /** Milliseconds since its last heartbeat (store clock). */
  heartbeatAgeMs: number
  /** Client ids of its broker sessions. */
  sessions: string[]
}

/** GET /admin/instances */
export interface ClusterView {
  self: string
  heartbeatMs: number
  expiryMs: number
  store: 'sqlite' | 'postgres'
  instances: InstanceView[]
  warnings: ClusterWarning[]
  /** Why the registry could not be read (store down); the list is then this instance alone. */
  error?: string
}
