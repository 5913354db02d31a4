/**
 * What a reload changes: the difference between the running configuration (and code versions)
 * and a newly loaded one, per function, with no side effect. src/gateway/reload.ts applies it.
 */
import type { ConnectionConfig, FunctionConfig, GatewayConfig } from '../config/schema.js'
import type { CompiledFunction } from '../sandbox/compile.js'

/** Top-level sections read once at start (server, admin access, store, identity, workers, logger). */
export const RESTART_SECTIONS = ['http', 'admin', 'store', 'instance', 'workers', 'log'] as const

/**
 * How one kept function changes. `code`: a new bundle version. `settings`: batch, retry, scale or
 * limits, applied in place. `trigger`: its trigger or the trigger's connection changed, so its
 * connector restarts. `unit`: its outputs (or their connections), orderKey or maxBacklog changed,
 * so the function drains and starts again with its trigger.
 */
export interface FunctionChange {
  name: string
  code: boolean
  settings: boolean
  trigger: boolean
  unit: boolean
}

export interface ReloadPlan {
  added: string[]
  removed: string[]
  updated: FunctionChange[]
  /** Key paths (`http.port`) whose change needs a restart; the running values stay. */
  restartRequired: string[]
  /** The configuration to run: the new one, with the sections that need a restart kept as they run. */
  config: GatewayConfig
}

/** JSON with object keys sorted: equal for equal values whatever the key order. */
function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  )
}

const same = (a: unknown, b: unknown) => stable(a) === stable(b)

function connectionOf(cfg: GatewayConfig, name: string | undefined): ConnectionConfig | undefined {
  return name === undefined ? undefined : cfg.connections[name]
}

function changeOf(cur: FunctionConfig, next: FunctionConfig, curCfg: GatewayConfig, nextCfg: GatewayConfig, curHash: string, nextHash: string): FunctionChange {
  const outputConnections = (cfg: GatewayConfig, fn: FunctionConfig) => Object.values(fn.outputs).map((o) => connectionOf(cfg, o.connection) ?? null)
  const trigger = !same(cur.trigger, next.trigger) || !same(connectionOf(curCfg, cur.trigger.connection), connectionOf(nextCfg, next.trigger.connection))
  const unit =
    cur.orderKey !== next.orderKey ||
    cur.maxBacklog !== next.maxBacklog ||
    !same(cur.outputs, next.outputs) ||
    !same(outputConnections(curCfg, cur), outputConnections(nextCfg, next))
  const settings =
    !same(cur.batch, next.batch) ||
    !same(cur.retry, next.retry) ||
    !same(cur.scale, next.scale) ||
    cur.timeoutMs !== next.timeoutMs ||
    cur.cpuTimeMs !== next.cpuTimeMs ||
    cur.memoryMb !== next.memoryMb
  return { name: next.name, code: curHash !== nextHash, settings, trigger: trigger || unit, unit }
}

/** Key paths under the restart-only sections that differ, e.g. `http.port`, `store.kind`. */
function restartPaths(cur: GatewayConfig, next: GatewayConfig): string[] {
  const out: string[] = []
  for (const section of RESTART_SECTIONS) {
    const a = (cur[section] ?? {}) as Record<string, unknown>
    const b = (next[section] ?? {}) as Record<string, unknown>
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) if (!same(a[key], b[key])) out.push(`${section}.${key}`)
  }
  return out
}

/**
 * Compares the running configuration `cur` (with each function's running code hash) with `next`
 * and its compiled functions. Pure: nothing is started or stopped.
 */
export function planReload(
  cur: GatewayConfig,
  curHashes: ReadonlyMap<string, string>,
  next: GatewayConfig,
  compiled: ReadonlyMap<string, CompiledFunction>,
): ReloadPlan {
  const added = Object.keys(next.functions).filter((n) => !(n in cur.functions))
  const removed = Object.keys(cur.functions).filter((n) => !(n in next.functions))
  const updated: FunctionChange[] = []
  for (const [name, fn] of Object.entries(next.functions)) {
    const old = cur.functions[name]
    if (!old) continue
    const c = changeOf(old, fn, cur, next, curHashes.get(name) ?? '', compiled.get(name)?.hash ?? '')
    if (c.code || c.settings || c.trigger || c.unit) updated.push(c)
  }
  const restartRequired = restartPaths(cur, next)
  const config: Record<string, unknown> = { ...next }
  for (const section of RESTART_SECTIONS) {
    if (cur[section] === undefined) delete config[section]
    else config[section] = cur[section]
  }
  return { added, removed, updated, restartRequired, config: Object.freeze(config) as unknown as GatewayConfig }
}
