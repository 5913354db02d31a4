/**
 * Builds a gateway's parts from its configuration, without starting any of them: the store, the
 * worker-host pool, the scheduler, the router, the HTTP server and each function's output
 * bindings. Nothing here opens a socket or a file beyond what a constructor does.
 */
import { resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { hostChannel } from '../channels.js'
import { CONNECTORS } from '../config/connectors.js'
import type { FunctionConfig, GatewayConfig } from '../config/schema.js'
import { SluiceError } from '../errors.js'
import { createHttpServer } from '../http/server.js'
import { asLogger, createLogger, type Pino } from '../log.js'
import { Router } from '../router/router.js'
import type { CompiledFunction } from '../sandbox/compile.js'
import { SandboxPool } from '../sandbox/pool.js'
import { Scheduler } from '../scheduler/scheduler.js'
import type { ConnectorDefinition, OutputBinding } from '../sdk/index.js'
import { SqliteStore } from '../store/sqlite.js'
import type { Store } from '../store/store.js'
import { resolveInstance, type InstanceSettings } from '../cluster/identity.js'

export interface GatewayOptions {
  config: GatewayConfig
  compiled: ReadonlyMap<string, CompiledFunction>
  /** Default: pino JSON on stdout at config.log.level. */
  logger?: Pino
  connectors?: readonly ConnectorDefinition[]
  /** Default: the store `config.store` describes (see openConfiguredStore). */
  store?: Store
}

/** The long-lived parts one gateway is made of; shared by the lifecycle, triggers and admin facade. */
export interface GatewayParts {
  /** Distinguishes gateways in one process on the diagnostics channels. */
  readonly id: number
  /** The configuration in effect: a reload (src/gateway/reload.ts) replaces it. */
  config: GatewayConfig
  readonly log: Pino
  /** Connector definitions by kind. */
  readonly defs: ReadonlyMap<string, ConnectorDefinition>
  readonly store: Store
  readonly pool: SandboxPool
  readonly scheduler: Scheduler
  readonly router: Router
  readonly app: FastifyInstance
  /** This instance's id and heartbeat settings (config `instance`, see src/cluster/identity.ts). */
  readonly instance: InstanceSettings
}

/**
 * The store `config.store` names. The single place a store kind is chosen: a new kind (postgres)
 * is one more case here, or an `openStore(config)` factory from src/store replacing this body.
 */
export function openConfiguredStore(config: GatewayConfig): Store {
  switch (config.store.kind) {
    case 'sqlite':
      return new SqliteStore(config.store.path === ':memory:' ? ':memory:' : resolve(config.root, config.store.path))
    default:
      throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', `store kind ${config.store.kind} is not available in this build`, { context: { path: 'store.kind' } })
  }
}

/** Creates every part; none is started. */
export function assembleParts(id: number, opts: GatewayOptions): GatewayParts {
  const { config } = opts
  const instance = resolveInstance(config)
  const log = opts.logger ?? createLogger(config.log.level)
  const slog = asLogger(log)
  const defs = new Map((opts.connectors ?? CONNECTORS).map((d) => [d.kind, d]))
  const store = opts.store ?? openConfiguredStore(config)
  const fns = Object.values(config.functions)
  const pool = new SandboxPool({
    hosts: config.workers.hosts,
    prewarm: config.workers.prewarm,
    prewarmSizes: [...new Set(fns.map((f) => f.memoryMb))].slice(0, 4),
    log: slog.child({ component: 'sandbox' }),
  })
  pool.on('host-down', (host: number, lost: number[]) => hostChannel.publish({ gateway: id, host, action: 'down', lostInstances: lost.length }))
  pool.on('host-up', (host: number) => hostChannel.publish({ gateway: id, host, action: 'up' }))
  const scheduler = new Scheduler(pool, {
    gateway: id,
    log: slog.child({ component: 'scheduler' }),
    hostMemoryMb: config.workers.memoryMb,
    maxInstancesPerHost: config.workers.maxInstancesPerHost,
  })
  const router = new Router({ gateway: id, log: slog, scheduler, store })
  const app = createHttpServer(config.http, log)
  return { id, config, log, defs, store, pool, scheduler, router, app, instance }
}

/** Creates a function's output bindings (not yet connected: each connects on first use). */
export function buildOutputs(parts: GatewayParts, fn: FunctionConfig): Map<string, OutputBinding> {
  const log = asLogger(parts.log)
  const outputs = new Map<string, OutputBinding>()
  for (const [name, out] of Object.entries(fn.outputs)) {
    const def = parts.defs.get(out.kind)
    if (!def?.createOutput) throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_OUTPUT', `output kind ${out.kind} is not available`, { context: { function: fn.name } })
    const conn = out.connection ? parts.config.connections[out.connection] : undefined
    outputs.set(
      name,
      def.createOutput({
        functionName: fn.name,
        outputName: name,
        output: out.options,
        ...(out.connection ? { connectionName: out.connection } : {}),
        ...(conn ? { connection: conn.options } : {}),
        log: log.child({ function: fn.name, output: name }),
      }),
    )
  }
  return outputs
}
