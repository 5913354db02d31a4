/**
 * Who this gateway instance is among the instances sharing a store: `instance.id` from the
 * config, else SLUICE_INSTANCE_ID, else the host name (the pod name in Kubernetes), with the
 * heartbeat settings checked against each other.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { sluicePackage } from '../cli/templates.js'
import type { GatewayConfig } from '../config/schema.js'
import { SluiceError } from '../errors.js'

export interface InstanceSettings {
  id: string
  /** Where the id came from: instance.id, SLUICE_INSTANCE_ID, or the host name (neither is set). */
  source: 'config' | 'env' | 'host'
  heartbeatMs: number
  expiryMs: number
}

/** What instance.id allows (the config schema's pattern): safe in client ids, owner ids and topics. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

export const INSTANCE_DEFAULTS = { heartbeatMs: 2000, expiryMs: 10_000 } as const

/** A new incarnation: one gateway run among the runs that used the same instance id (a restart gets a new one). */
export function newIncarnation(): string {
  return `${process.pid}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`
}

/**
 * The instance settings of `config`. Throws SLUICE_ERR_INSTANCE_CONFIG when the expiry is shorter
 * than three heartbeats (one slow write would declare a live instance dead).
 */
export function resolveInstance(config: Pick<GatewayConfig, 'instance'>, env: NodeJS.ProcessEnv = process.env): InstanceSettings {
  const c: Partial<NonNullable<GatewayConfig['instance']>> = config.instance ?? {}
  const heartbeatMs = c.heartbeatMs ?? INSTANCE_DEFAULTS.heartbeatMs
  const expiryMs = c.expiryMs ?? INSTANCE_DEFAULTS.expiryMs
  if (expiryMs < 3 * heartbeatMs) {
    throw new SluiceError(
      'SLUICE_ERR_INSTANCE_CONFIG',
      `instance.expiryMs (${expiryMs}) must be at least 3 x instance.heartbeatMs (${heartbeatMs}): raise expiryMs to ${3 * heartbeatMs} or more`,
      {
        context: { path: 'instance.expiryMs' },
      },
    )
  }
  const fromEnv = env.SLUICE_INSTANCE_ID?.trim()
  if (c.id === undefined && fromEnv && !ID_PATTERN.test(fromEnv)) {
    throw new SluiceError(
      'SLUICE_ERR_INSTANCE_CONFIG',
      `SLUICE_INSTANCE_ID ${JSON.stringify(fromEnv)} is not a valid instance id: use letters, digits, '.', '_' and '-' (at most 128 characters, starting with a letter or digit)`,
      {
        context: { path: 'instance.id' },
      },
    )
  }
  if (c.id !== undefined) return { id: c.id, source: 'config', heartbeatMs, expiryMs }
  return fromEnv ? { id: fromEnv, source: 'env', heartbeatMs, expiryMs } : { id: hostname(), source: 'host', heartbeatMs, expiryMs }
}

/** The version of this sluice build (package.json), or 'unknown'. */
export function sluiceVersion(): string {
  try {
    return sluicePackage().version
  } catch {
    return 'unknown'
  }
}
