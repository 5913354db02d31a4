/**
 * Hot reload (issue 10): reads the configuration and the function code again and applies only
 * what changed, without losing an event.
 *
 * - Invalid configuration or a function that does not compile: nothing changes; the errors are
 *   logged with file:line and returned (and kept per function for the dashboard).
 * - A new function starts with its trigger. A removed one drains: its trigger stops taking events,
 *   running batches finish, queued events are answered `aborted` (the source keeps them).
 * - New code: the next batches run the new version; running batches finish on the old one, whose
 *   instances stop once released (Scheduler.update).
 * - Batch, retry, scale and limits apply in place; a changed trigger (or its connection) restarts
 *   that connector only; changed outputs, orderKey or maxBacklog restart that function's unit.
 * - http, admin, store, instance, workers and log are read once at start: a change is reported as
 *   needing a restart and the running values stay.
 *
 * Reloads run one at a time, in the order asked.
 */
import { CONNECTORS } from '../config/connectors.js'
import { formatIssue, issuesOf, loadConfig, type LoadedConfig } from '../config/load.js'
import type { FunctionConfig } from '../config/schema.js'
import { SluiceError, toInfo } from '../errors.js'
import type { ReloadIssue, ReloadResult } from '../http/admin.js'
import { asLogger } from '../log.js'
import type { Logger } from '../sdk/index.js'
import type { GatewayState } from './admin-facade.js'
import { buildOutputs, type GatewayParts } from './assembly.js'
import type { FunctionRoutes } from './function-routes.js'
import { closeOutputs, createUnit, routerFunction, schedulerSpec, type FunctionUnit } from './function-unit.js'
import { planReload, type FunctionChange } from './reload-plan.js'
import { startTrigger, stopTrigger } from './triggers.js'

export interface ReloaderDeps {
  parts: GatewayParts
  units: Map<string, FunctionUnit>
  routes: FunctionRoutes
  state(): GatewayState
  /** Bound on draining one function's running batches. Default 30 s. */
  drainTimeoutMs?: number
}

/** Where a reload's configuration comes from. Default: the gateway's config file, read again. */
export type ReloadSource = () => Promise<LoadedConfig>

export class Reloader {
  private chain: Promise<unknown> = Promise.resolve()
  private readonly log: Logger
  private readonly listeners = new Set<(r: ReloadResult) => void>()
  /** Code files of a configuration that was refused (a new function that does not compile yet). */
  private pending: string[] = []

  constructor(private readonly d: ReloaderDeps) {
    this.log = asLogger(d.parts.log).child({ component: 'reload' })
  }

  /** Reloads (after any reload in progress). Never rejects: failures are in the result. */
  reload(source?: ReloadSource): Promise<ReloadResult> {
    const run = this.chain
      .then(() => this.run(source ?? (() => this.readFile())))
      .catch((e: unknown): ReloadResult => {
        const info = toInfo(e, 'SLUICE_ERR_RELOAD_APPLY')
        this.log.error({ err: info }, 'reload failed')
        return { ok: false, changed: { added: [], removed: [], updated: [], restartRequired: [] }, errors: [{ code: info.code, message: info.message }] }
      })
      .then((r) => {
        for (const l of this.listeners) {
          try {
            l(r)
          } catch (e) {
            this.log.error({ err: toInfo(e) }, 'a reload listener failed')
          }
        }
        return r
      })
    this.chain = run
    return run
  }

  /** Calls `listener` after every reload (whatever asked for it); returns its removal. */
  onReload(listener: (r: ReloadResult) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /**
   * The files a watcher should watch: the configuration file, every source file the running
   * bundles were built from (esbuild's inputs, node_modules left out) and the code files of a
   * refused configuration (so fixing a new function's compile error is seen too).
   */
  sources(): string[] {
    const files = new Set<string>()
    if (this.d.parts.config.file) files.add(this.d.parts.config.file)
    for (const u of this.d.units.values()) {
      files.add(u.code.file)
      for (const f of u.code.inputs ?? []) if (!/[\\/]node_modules[\\/]/.test(f)) files.add(f)
    }
    for (const f of this.pending) files.add(f)
    return [...files]
  }

  private readFile(): Promise<LoadedConfig> {
    const { config, defs } = this.d.parts
    if (!config.file) {
      return Promise.reject(
        new SluiceError(
          'SLUICE_ERR_RELOAD_UNAVAILABLE',
          'this gateway was started with a configuration built in code, not read from a file: there is nothing to read again',
        ),
      )
    }
    return loadConfig(config.file, { connectors: defs.size > 0 ? [...defs.values()] : CONNECTORS, root: config.root })
  }

  private async run(source: ReloadSource): Promise<ReloadResult> {
    const none = { added: [], removed: [], updated: [], restartRequired: [] }
    if (this.d.state() !== 'up') {
      return {
        ok: false,
        changed: none,
        errors: [{ code: 'SLUICE_ERR_RELOAD_UNAVAILABLE', message: `the gateway is ${this.d.state()}: reload once it is up` }],
      }
    }
    const t0 = performance.now()
    let loaded: LoadedConfig
    try {
      loaded = await source()
    } catch (e) {
      this.pending = await this.codeFiles()
      return { ok: false, changed: none, errors: this.refused(e) }
    }
    this.pending = []
    const { parts, units } = this.d
    for (const u of units.values()) delete u.reloadError
    const hashes = new Map([...units].map(([n, u]) => [n, u.code.hash]))
    const plan = planReload(parts.config, hashes, loaded.config, loaded.compiled)
    parts.config = plan.config
    const errors: ReloadIssue[] = []
    const fail = (name: string, e: unknown) => {
      const info = toInfo(e, 'SLUICE_ERR_RELOAD_APPLY')
      errors.push({ code: info.code, message: info.message, function: name })
      this.log.error({ function: name, err: info }, `reload: function ${name} could not be applied`)
    }
    // Removed first: a function renamed with the same route or client id frees them for its successor.
    await Promise.all(plan.removed.map((n) => this.remove(n).catch((e: unknown) => fail(n, e))))
    await Promise.all(plan.updated.map((c) => this.update(c, plan.config.functions[c.name] as FunctionConfig, loaded).catch((e: unknown) => fail(c.name, e))))
    const added: string[] = []
    await Promise.all(
      plan.added.map(async (n) => {
        try {
          await this.add(plan.config.functions[n] as FunctionConfig, loaded)
          added.push(n)
        } catch (e) {
          fail(n, e)
        }
      }),
    )
    for (const key of plan.restartRequired)
      this.log.warn({ path: key }, `reload: ${key} changed; it takes effect only after a restart (the gateway keeps the running value)`)
    const changed = {
      added: plan.added.filter((n) => added.includes(n)),
      removed: plan.removed,
      updated: plan.updated.map((c) => c.name),
      restartRequired: plan.restartRequired,
    }
    const ms = Math.round(performance.now() - t0)
    const fields = { ...changed, errors: errors.length, ms }
    if (errors.length > 0) this.log.error(fields, 'reload applied with errors')
    else this.log.info(fields, changed.added.length + changed.removed.length + changed.updated.length > 0 ? 'reload applied' : 'reload: nothing changed')
    return { ok: errors.length === 0, changed, errors }
  }

  /** The code files the configuration file names, when it is valid apart from its code ([] otherwise). */
  private async codeFiles(): Promise<string[]> {
    const { config, defs } = this.d.parts
    if (!config.file) return []
    try {
      const l = await loadConfig(config.file, { connectors: [...defs.values()], root: config.root, compile: false })
      return Object.values(l.config.functions).map((f) => f.codePath)
    } catch {
      return []
    }
  }

  /** A configuration that does not load: logged issue by issue (file:line:col), nothing changes. */
  private refused(e: unknown): ReloadIssue[] {
    for (const u of this.d.units.values()) delete u.reloadError
    const issues = issuesOf(e)
    if (issues.length === 0) {
      const info = toInfo(e, 'SLUICE_ERR_CONFIG_INVALID')
      this.log.error({ err: info }, `reload refused: ${info.message}; the gateway keeps running what it ran`)
      return [{ code: info.code, message: info.message }]
    }
    const at = new Date().toISOString()
    for (const i of issues) {
      const fn = /^functions\.([^.]+)/.exec(i.path)?.[1]
      const unit = fn === undefined ? undefined : this.d.units.get(fn)
      if (unit && unit.reloadError?.at !== at) unit.reloadError = { code: i.code, message: i.message, at }
      this.log.error(
        { ...(fn ? { function: fn } : {}), file: i.file, line: i.line, col: i.col, path: i.path, err: { code: i.code, message: i.message } },
        `reload refused: ${formatIssue(i)}`,
      )
    }
    this.log.warn({ errors: issues.length }, 'reload refused: the configuration has errors; the gateway keeps running the configuration and code it ran')
    return issues.map((i) => ({ code: i.code, message: i.message, file: i.file, line: i.line, col: i.col, path: i.path }))
  }

  private async remove(name: string): Promise<void> {
    const unit = this.d.units.get(name)
    if (!unit) return
    this.log.info({ function: name }, 'reload: removing function (its trigger stops, running batches finish, queued events stay at the source)')
    await this.stopUnit(unit)
    this.d.parts.scheduler.unregister(name)
    this.d.units.delete(name)
  }

  /** Stops a unit's trigger and drains its router lane (queued events answered `aborted`), then forgets it in the router. */
  private async stopUnit(unit: FunctionUnit): Promise<void> {
    const { router } = this.d.parts
    const drained = router.drain(unit.name, this.d.drainTimeoutMs)
    if (unit.trigger) {
      await stopTrigger(unit.trigger, this.d.routes)
      this.log.info({ function: unit.name, trigger: unit.trigger.kind }, 'reload: trigger stopped')
    }
    await drained
    router.unregister(unit.name)
    await closeOutputs(unit).catch((e: unknown) => this.log.warn({ function: unit.name, err: toInfo(e) }, 'reload: closing outputs failed'))
  }

  private async update(c: FunctionChange, fn: FunctionConfig, loaded: LoadedConfig): Promise<void> {
    const { parts, units } = this.d
    const old = units.get(c.name)
    if (!old) return
    const code = c.code ? loaded.compiled.get(c.name) : old.code
    if (!code) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${c.name} was not compiled`, { context: { function: c.name } })
    const what = (['code', 'settings', 'trigger', 'unit'] as const).filter((k) => c[k])
    this.log.info(
      { function: c.name, changes: what, ...(c.code ? { version: code.hash, previous: old.code.hash } : {}) },
      `reload: updating function ${c.name} (${what.join(', ')})`,
    )
    if (c.unit) {
      // Outputs, orderKey or maxBacklog: the unit drains (its trigger stops gracefully first, so
      // nothing it delivered is aborted) and starts again.
      if (old.trigger) await stopTrigger(old.trigger, this.d.routes)
      // Its counts and latencies go on in the restarted unit (the dashboard keeps its history).
      const stats = parts.router.stats(c.name).stats
      await this.stopUnit({ ...old, trigger: undefined } as FunctionUnit)
      units.delete(c.name)
      if (c.code) parts.pool.registerCode(code.hash, code.code)
      parts.scheduler.update(schedulerSpec(fn, code))
      const outputs = buildOutputs(parts, fn)
      parts.router.register(routerFunction(fn, outputs), stats)
      const unit: FunctionUnit = { name: fn.name, config: fn, code, outputs, loadedAt: c.code ? new Date().toISOString() : old.loadedAt }
      units.set(c.name, unit)
      await this.startTriggerOf(unit)
      return
    }
    if (c.code) parts.pool.registerCode(code.hash, code.code)
    if (c.code || c.settings) parts.scheduler.update(schedulerSpec(fn, code))
    if (c.settings) parts.router.update(routerFunction(fn, old.outputs))
    const unit: FunctionUnit = { ...old, config: fn, code, loadedAt: c.code ? new Date().toISOString() : old.loadedAt }
    units.set(c.name, unit)
    if (c.trigger) {
      if (old.trigger) {
        await stopTrigger(old.trigger, this.d.routes)
        this.log.info({ function: c.name, trigger: old.trigger.kind }, 'reload: trigger stopped')
      }
      delete unit.trigger
      await this.startTriggerOf(unit)
    }
  }

  private async add(fn: FunctionConfig, loaded: LoadedConfig): Promise<void> {
    const { parts, units } = this.d
    this.log.info({ function: fn.name }, `reload: adding function ${fn.name}`)
    const unit = createUnit(parts, fn, loaded.compiled)
    units.set(fn.name, unit)
    try {
      await this.startTriggerOf(unit)
    } catch (e) {
      // Not started: take it out again, so a later reload sees it as new.
      await this.stopUnit(unit).catch(() => undefined)
      parts.scheduler.unregister(fn.name)
      units.delete(fn.name)
      throw e
    }
  }

  private async startTriggerOf(unit: FunctionUnit): Promise<void> {
    const { parts } = this.d
    const stopping = () =>
      new SluiceError('SLUICE_ERR_RELOAD_UNAVAILABLE', `the gateway began to stop during the reload: function ${unit.name} was not started`)
    // The stop sequence stops the triggers it finds when it begins: start none after that.
    if (this.d.state() !== 'up') throw stopping()
    const binding = await startTrigger(parts, unit, this.d.routes, parts.startRetry ? { retry: parts.startRetry } : {})
    if (this.d.state() !== 'up') {
      await stopTrigger(binding, this.d.routes)
      throw stopping()
    }
    this.log.info(
      { function: unit.name, trigger: unit.config.trigger.kind, ...(unit.config.trigger.connection ? { connection: unit.config.trigger.connection } : {}) },
      'reload: trigger started',
    )
  }
}
