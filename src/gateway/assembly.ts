/**
 * Builds a gateway's parts from its configuration, without starting any of them: the worker-host
 * pool, the scheduler, the router, the HTTP server and each function's output
 * bindings. Nothing here opens a socket or a file beyond what a constructor does.
 */
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
import type { Store } from '../store/store.js'
import { resolveInstance, type InstanceSettings } from '../cluster/identity.js'

export interface GatewayOptions {
  config: GatewayConfig
  compiled: ReadonlyMap<string, CompiledFunction>
  /** Default: pino JSON on stdout at config.log.level. */
  logger?: Pino
  connectors?: readonly ConnectorDefinition[]
  /** Default: the store `config.store` describes, opened by openStore (src/store/open.ts). */
  store?: Store
  /** Delays between start attempts of a trigger whose broker is unreachable. Default: START_RETRY (src/gateway/triggers.ts). */
  startRetry?: { initialDelayMs: number; maxDelayMs: number }
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
  readonly startRetry?: { initialDelayMs: number; maxDelayMs: number }
}

/** Creates every part around an opened store (Gateway.start opens it with openStore); none is started. */
export function assembleParts(id: number, opts: GatewayOptions & { store: Store }): GatewayParts {
  const { config, store } = opts
  const instance = resolveInstance(config)
  const log = opts.logger ?? createLogger(config.log.level)
  const slog = asLogger(log)
  const defs = new Map((opts.connectors ?? CONNECTORS).map((d) => [d.kind, d]))
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
  return { id, config, log, defs, store, pool, scheduler, router, app, instance, ...(opts.startRetry ? { startRetry: opts.startRetry } : {}) }
}

/** Creates a function's output bindings (not yet connected: each connects on first use). */
export function buildOutputs(parts: GatewayParts, fn: FunctionConfig): Map<string, OutputBinding> {
  const log = asLogger(parts.log)
  const outputs = new Map<string, OutputBinding>()
  for (const [name, out] of Object.entries(fn.outputs)) {
    const def = parts.defs.get(out.kind)
    if (!def?.createOutput)
      throw new SluiceError('SLUICE_ERR_CONFIG_UNKNOWN_OUTPUT', `output kind ${out.kind} is not a known kind`, { context: { function: fn.name } })
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
