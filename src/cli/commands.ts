import { randomUUID } from 'node:crypto'
import { CONNECTORS } from '../config/connectors.js'
import { displayPath, loadConfig, type LoadedConfig } from '../config/load.js'
import { SluiceError } from '../errors.js'
import { Gateway } from '../gateway.js'
import { installProcessGuard } from '../process-guard.js'
import { asLogger, createLogger } from '../log.js'
import { Router } from '../router/router.js'
import { SandboxPool } from '../sandbox/pool.js'
import { Scheduler } from '../scheduler/scheduler.js'
import type { InvocationResult, OutputBinding, TriggerEvent } from '../sdk/index.js'
import { SqliteStore } from '../store/sqlite.js'
import { adminRequest } from './remote.js'
import { typecheck, type TypecheckResult } from './typecheck.js'
import { watchSources } from './watch-notice.js'
import { watchAndReload } from './watch-reload.js'
import { invokeMeta, invokeTimerBody } from './invoke-meta.js'
import type { FunctionConfig, GatewayConfig } from '../config/schema.js'

async function load(config: string, compile = true): Promise<LoadedConfig> {
  return loadConfig(config, { connectors: CONNECTORS, compile })
}

/**
 * `sluice start`: runs until SIGTERM/SIGINT, then drains and exits 0. SIGHUP reloads the
 * configuration and function code; with `watch`, every change to them does.
 */
export async function runStart(configPath: string, opts: { watch?: boolean } = {}): Promise<number> {
  const loaded = await load(configPath)
  const logger = createLogger(loaded.config.log.level)
  for (const note of loaded.notes) logger.info({ config: configPath }, note)
  // Signals are wired before the start: a SIGTERM while triggers come up (which can take a
  // broker's start timeout) stops the gateway as soon as it is up instead of killing the process
  // mid-start with nothing drained.
  let signalled: string | undefined
  let onSignal: (signal: string) => void = (signal) => {
    signalled ??= signal
    logger.info({ signal }, 'signal during start: stopping once the gateway is up')
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  // SIGHUP reloads (its default action would end the process); one during the start reloads once up.
  let onHup: () => void = () => {
    onHup = () => undefined
    logger.info({ signal: 'SIGHUP' }, 'reload asked during start: reloading once the gateway is up')
    void started.then((g) => g.reload()).catch(() => undefined)
  }
  process.on('SIGHUP', () => onHup())
  const started = Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger })
  started.catch(() => undefined)
  const gw = await started
  installProcessGuard({ log: logger, drain: () => gw.stop() })
  // Without --watch an edit changes nothing until a reload: say so when it happens.
  const watcher = opts.watch ? watchAndReload(gw, logger) : watchSources(loaded.config, logger, { compiled: loaded.compiled })
  // The reload logs what it applied or why it refused; it never rejects.
  onHup = () => {
    logger.info({ signal: 'SIGHUP' }, 'reloading the configuration and function code')
    void gw.reload()
  }
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without draining')
        resolve(1)
        return
      }
      stopping = true
      watcher.close()
      logger.info({ signal }, 'stopping: draining in-flight work')
      gw.stop().then(
        () => resolve(0),
        () => resolve(1),
      )
    }
    onSignal = stop
    if (signalled) stop(signalled)
  })
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`

/**
 * `sluice validate`: every config error at once, every function bundled, and with `typecheck` the
 * TypeScript types of the function files. Says what it checked; exits 1 on type errors.
 */
export async function runValidate(configPath: string, opts: { json: boolean; typecheck: boolean }): Promise<number> {
  const loaded = await load(configPath)
  const { config } = loaded
  const fns = Object.values(config.functions)
  const types: TypecheckResult | undefined = opts.typecheck
    ? await typecheck(
        config.root,
        fns.map((f) => f.codePath),
      )
    : undefined
  const typeErrors = types?.issues ?? []
  if (opts.json) {
    const report = {
      ok: typeErrors.length === 0,
      root: config.root,
      checked: { schema: true, references: true, bundled: fns.length, types: types ? { typescript: types.version, files: types.files } : false },
      functions: fns.map((f) => f.name),
      connections: Object.keys(config.connections),
      ...(types ? { typeErrors: typeErrors.map((i) => ({ ...i, code: 'SLUICE_ERR_FUNCTION_TYPE' })) } : {}),
      notes: loaded.notes,
    }
    process.stdout.write(`${JSON.stringify(report)}\n`)
    return typeErrors.length === 0 ? 0 : 1
  }
  if (typeErrors.length > 0) {
    process.stderr.write(`sluice: ${configPath}: ${plural(typeErrors.length, 'type error')} (TypeScript ${types?.version}):\n`)
    for (const i of typeErrors) process.stderr.write(`  ${i.file ? `${i.file}:${i.line}:${i.col} ` : ''}${i.message} [SLUICE_ERR_FUNCTION_TYPE]\n`)
    return 1
  }
  const out: string[] = [
    `${configPath}: ok (${plural(fns.length, 'function')}, ${plural(Object.keys(config.connections).length, 'connection')})`,
    `  project root: ${config.root} (relative paths in the config start here)`,
    '  checked: the config against its schema; the connections, routes and schedules it names;',
    `           ${plural(fns.length, 'function')} bundled (syntax, imports, default export)`,
    types
      ? `  types: ${plural(types.files.length, 'TypeScript file')} checked with TypeScript ${types.version}`
      : '  not checked: TypeScript types (run sluice validate --typecheck)',
    '  not contacted: brokers and the store',
  ]
  for (const f of fns) out.push(`  ${f.name}: ${f.trigger.kind} trigger, ${displayPath(config.root, f.codePath)}`)
  for (const n of loaded.notes) out.push(`  note: ${n}`)
  process.stdout.write(`${out.join('\n')}\n`)
  return 0
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch (e) {
    throw new SluiceError('SLUICE_ERR_CLI_USAGE', `${what} is not valid JSON: ${(e as Error).message}`)
  }
}

/**
 * The events of `sluice invoke`. Without a meta of their own they get one shaped for the trigger
 * of `target` (when its configuration could be read), so typed functions see what they expect.
 */
function eventsFrom(data: string | undefined, events: string | undefined, target: { config: GatewayConfig; fn: FunctionConfig } | undefined): TriggerEvent[] {
  const now = new Date().toISOString()
  const fn = target?.fn
  const connection = fn?.trigger.connection === undefined ? undefined : target?.config.connections[fn.trigger.connection]
  const metaFor = (hasBody: boolean) => (fn ? invokeMeta(fn, connection, now, hasBody) : {})
  if (events !== undefined) {
    const list = parseJson(events, '--events')
    if (!Array.isArray(list)) throw new SluiceError('SLUICE_ERR_CLI_USAGE', '--events must be a JSON array of events')
    return list.map((e: Partial<TriggerEvent>, i) => ({
      id: e.id ?? `cli-${i}`,
      source: e.source ?? 'cli://invoke',
      time: e.time ?? now,
      body: e.body ?? null,
      meta: e.meta ?? metaFor(e.body != null),
      ...(e.key ? { key: e.key } : {}),
    }))
  }
  const body = data === undefined ? (fn?.trigger.kind === 'timer' ? invokeTimerBody(fn, now) : null) : parseJson(data, '--data')
  return [{ id: `cli-${randomUUID()}`, source: 'cli://invoke', time: now, body, meta: metaFor(data !== undefined) }]
}

/**
 * `sluice invoke`: with --url, through the running gateway's admin API (outputs are sent);
 * without, in a sandbox started for the purpose (outputs are printed, not sent).
 */
export async function runInvoke(o: {
  config: string
  fn: string
  data?: string | undefined
  events?: string | undefined
  url?: string | undefined
  key?: string | undefined
}): Promise<number> {
  // With --url the configuration only shapes the events' meta: invoke works without it too.
  const target = o.url ? await load(o.config, false).catch(() => undefined) : await load(o.config)
  const targetFn = target?.config.functions[o.fn]
  const events = eventsFrom(o.data, o.events, target && targetFn ? { config: target.config, fn: targetFn } : undefined)
  let result: InvocationResult
  if (o.url) {
    result = (await adminRequest({ url: o.url, key: o.key }, 'POST', `/admin/functions/${encodeURIComponent(o.fn)}/invoke`, { events })) as InvocationResult
  } else {
    const loaded = target as LoadedConfig
    const fn = loaded.config.functions[o.fn]
    const code = loaded.compiled.get(o.fn)
    if (!fn || !code)
      throw new SluiceError(
        'SLUICE_ERR_FUNCTION_NOT_FOUND',
        `no function named ${o.fn} in ${o.config} (have: ${Object.keys(loaded.config.functions).join(', ')})`,
      )
    // The function's own log lines are printed once, from the result, below: leave them out here.
    const log = asLogger(createLogger('warn', { write: (line: string) => (line.includes('"source":"function"') ? true : process.stderr.write(line)) }))
    const pool = new SandboxPool({ hosts: 1, prewarm: 0, prewarmSizes: [], log })
    const store = new SqliteStore(':memory:')
    await pool.start()
    try {
      pool.registerCode(code.hash, code.code)
      const scheduler = new Scheduler(pool, { gateway: 0, log, hostMemoryMb: Math.max(fn.memoryMb, 64), maxInstancesPerHost: 1 })
      scheduler.register({
        name: fn.name,
        hash: code.hash,
        memoryMb: fn.memoryMb,
        outputs: Object.keys(fn.outputs),
        timeoutMs: fn.timeoutMs,
        cpuTimeMs: fn.cpuTimeMs,
        scale: { ...fn.scale, min: 0 },
      })
      const printOnly: OutputBinding = { publish: async () => undefined, close: async () => undefined }
      const router = new Router({ gateway: 0, log, scheduler, store })
      router.register({
        name: fn.name,
        batch: fn.batch,
        retry: fn.retry,
        maxBacklog: fn.maxBacklog,
        orderKey: fn.orderKey,
        maxConcurrency: 1,
        outputs: new Map(Object.keys(fn.outputs).map((n) => [n, printOnly])),
      })
      result = await router.invoke(fn.name, events)
      scheduler.close()
    } finally {
      await pool.close()
      await store.close()
    }
  }
  for (const l of result.logs) process.stderr.write(`[${l.level}] ${l.msg}\n`)
  const { logs: _logs, ...rest } = result
  process.stdout.write(`${JSON.stringify(rest, null, 2)}\n`)
  return result.ok ? 0 : 1
}
