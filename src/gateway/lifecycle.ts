/**
 * Start and stop order of a gateway. Start: functions (registered with the scheduler and router),
 * the HTTP server bound to its port, the sandboxes, then the triggers, so a gateway that cannot
 * serve fails at once and consumes nothing from a broker. Stop, in reverse: triggers stop taking events while the
 * router drains, then the HTTP server, scheduler, outputs, sandboxes and store; each step runs even
 * when an earlier one failed and each is bounded by the timeout.
 */
import type { GatewayConfig } from '../config/schema.js'
import { SluiceError, toInfo } from '../errors.js'
import { registerAdminRoutes, registerLiveness } from '../http/admin.js'
import { adminAccess, adminGuard, describeAdminAccess, type AdminAccess } from '../http/auth.js'
import { registerDashboard } from '../http/dashboard.js'
import { registerLiveRoutes, type LiveFeed } from '../http/live.js'
import type { Metrics } from '../http/metrics.js'
import { asLogger } from '../log.js'
import type { CompiledFunction } from '../sandbox/compile.js'
import type { GatewayAdmin, GatewayState } from './admin-facade.js'
import type { ClusterMember } from '../cluster/member.js'
import type { GatewayParts } from './assembly.js'
import type { DirectHttp } from './direct-http.js'
import type { FunctionRoutes } from './function-routes.js'
import { closeOutputs, createUnit, type FunctionUnit } from './function-unit.js'
import { startTrigger, stopTrigger } from './triggers.js'

/** What the start and stop sequences work on: the gateway's parts and its mutable state. */
export interface LifecycleTarget {
  readonly parts: GatewayParts
  readonly compiled: ReadonlyMap<string, CompiledFunction>
  readonly units: Map<string, FunctionUnit>
  readonly routes: FunctionRoutes
  readonly direct: DirectHttp
  readonly admin: GatewayAdmin
  readonly cluster: ClusterMember
  readonly live: LiveFeed
  readonly metrics: Metrics
  setState(s: GatewayState): void
  setUrl(url: string): void
}

export async function startSequence(t: LifecycleTarget): Promise<void> {
  const { parts } = t
  const { config, app } = parts
  const log = asLogger(parts.log)
  for (const fn of Object.values(config.functions)) t.units.set(fn.name, createUnit(parts, fn, t.compiled))
  // The port first: a port in use fails the start at once, before worker hosts or triggers run.
  const access = registerHttpSurface(t)
  await listen(parts)
  t.direct.install()
  const url = baseUrl(config, app.server.address())
  t.setUrl(url)
  const admin = describeAdminAccess(access, url, config.http.host)
  const fields = { admin: { url: admin.adminUrl, protection: admin.protection } }
  if (admin.protection === 'disabled') log.warn(fields, admin.message)
  else log.info(fields, admin.message)

  // Before anything consumes: waits out a predecessor with this instance id, refuses a live one.
  await t.cluster.claim()
  await parts.pool.start()
  parts.scheduler.start()

  // Each resolves once its trigger runs, or once a trigger on an unreachable connection is down
  // and retrying (see triggers.ts); a required connection's failure rejects.
  await Promise.all([...t.units.values()].map((u) => startTrigger(parts, u, t.routes, parts.startRetry ? { retry: parts.startRetry } : {})))
  t.setState('up')
  // Registered once its triggers run, so its first heartbeat already lists their broker sessions.
  await t.cluster.start()
  t.live.start()
  log.info({ url, functions: t.units.size, hosts: config.workers.hosts }, 'gateway up')
}

/**
 * Binds the HTTP port. A port in use (most often another gateway still running on it) fails the
 * start with SLUICE_ERR_HTTP_PORT_IN_USE, before any trigger has consumed anything.
 */
async function listen(parts: GatewayParts): Promise<void> {
  const { port, host } = parts.config.http
  try {
    await parts.app.listen({ port, host })
  } catch (e) {
    const code = (e as { code?: unknown }).code
    if (code === 'EADDRINUSE') {
      throw new SluiceError(
        'SLUICE_ERR_HTTP_PORT_IN_USE',
        `HTTP port ${port} on ${host} is already in use: is another sluice gateway (or another server) running there? Stop it, or set http.port to a free port; nothing was consumed`,
        { cause: e, context: { path: 'http.port' } },
      )
    }
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new SluiceError(
        'SLUICE_ERR_HTTP_PORT_IN_USE',
        `cannot listen on ${host}:${port} (${String(code)}): choose a port above 1023 and an address of this machine in http.port / http.host`,
        {
          cause: e,
          context: { path: 'http.port' },
        },
      )
    }
    throw e
  }
}

/** Registers the admin API, the live feed, the dashboard and the /api catch-all (before listen). */
function registerHttpSurface(t: LifecycleTarget): AdminAccess {
  const { app, config } = t.parts
  const access = adminAccess(config)
  const guard = adminGuard(access)
  registerLiveness(app)
  registerAdminRoutes(app, t.admin, guard)
  registerLiveRoutes(app, t.live, adminGuard(access, { queryKey: true }))
  // The page shell holds no data: with an admin key it loads for anyone (its data calls need the
  // key); without one it keeps the admin API's rules.
  registerDashboard(app, access.protection === 'key' ? {} : { guard })
  t.routes.install(app)
  t.direct.register()
  return access
}

function baseUrl(config: GatewayConfig, addr: ReturnType<GatewayParts['app']['server']['address']>): string {
  const port = typeof addr === 'object' && addr ? addr.port : config.http.port
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Runs the stop steps in order; a failed or slow step is logged and the next one still runs. */
export async function stopSequence(t: LifecycleTarget, timeoutMs: number): Promise<void> {
  const { parts } = t
  const log = asLogger(parts.log)
  t.setState('stopping')
  t.routes.close()
  const units = [...t.units.values()]
  const steps: Array<[string, () => Promise<unknown> | unknown]> = [
    ['session takeovers', () => t.cluster.stopTakeovers()],
    [
      'connectors and router',
      () => Promise.all([...units.flatMap((u) => (u.trigger ? [stopTrigger(u.trigger, t.routes)] : [])), parts.router.close(timeoutMs)]),
    ],
    // After the drain: other instances take its sessions over only once its own PUBACKs are out.
    ['cluster registry', () => t.cluster.stop()],
    ['live feed', () => t.live.close()],
    ['direct http', () => t.direct.close()],
    ['http server', () => parts.app.close()],
    ['scheduler', () => parts.scheduler.close()],
    ['outputs', () => Promise.all(units.map(closeOutputs))],
    ['sandboxes', () => parts.pool.close()],
    ['metrics', () => t.metrics.close()],
    ['store', () => parts.store.close()],
  ]
  for (const [name, step] of steps) {
    try {
      await withTimeout(Promise.resolve(step()), timeoutMs, name)
    } catch (e) {
      log.error({ step: name, err: toInfo(e, 'SLUICE_ERR_SANDBOX_CLOSED') }, 'shutdown step failed; continuing')
    }
  }
  t.setState('stopped')
  log.info({}, 'gateway stopped')
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not stop within ${ms} ms`)), ms)
    }),
  ])
}
