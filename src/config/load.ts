import { readFile } from 'node:fs/promises'
import { existsSync, statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Type, type TSchema } from '@sinclair/typebox'
import { Value, ValueErrorType } from '@sinclair/typebox/value'
import { SluiceError, type ErrorCode } from '../errors.js'
import type { ConnectorDefinition } from '../sdk/index.js'
import { compileFunction, type CompiledFunction } from '../sandbox/compile.js'
import { YamlSource, type Path } from './yaml-source.js'
import {
  adminSchema,
  buildFunctionSchema,
  connectionCommonSchema,
  httpSchema,
  instanceSchema,
  logSchema,
  NAME_PATTERN,
  storeSchema,
  workersSchema,
  type ConnectionConfig,
  type FunctionConfig,
  type GatewayConfig,
} from './schema.js'
import { semanticChecks } from './checks.js'
import { configError, type ConfigIssue } from './issues.js'
import { displayPath, findProjectRoot } from './paths.js'
import { patternMessage } from './pattern-messages.js'
import { coerceEnv } from './env-coerce.js'

export { configError, formatIssue, issuesOf, type ConfigIssue } from './issues.js'
export { displayPath, findProjectRoot } from './paths.js'

export interface LoadedConfig {
  config: GatewayConfig
  /** Compiled code per function (absent when loaded with compile: false). */
  compiled: Map<string, CompiledFunction>
  /** Things worth a log line that are not errors (unset optional ${VAR}s). */
  notes: string[]
}

export interface LoadOptions {
  connectors: readonly ConnectorDefinition[]
  env?: Record<string, string | undefined>
  /**
   * Project root for relative paths (`code`, `store.path`). Default: the nearest folder at or
   * above the config file that holds a package.json, else the config file's folder
   * (`findProjectRoot`); never the current directory.
   */
  root?: string
  /** Compile every function (default true). */
  compile?: boolean
}

/** Reads, validates and compiles a configuration file. Throws SLUICE_ERR_CONFIG_INVALID listing every issue. */
export async function loadConfig(file: string, opts: LoadOptions): Promise<LoadedConfig> {
  const abs = resolve(file)
  let text: string
  try {
    text = await readFile(abs, 'utf8')
  } catch (e) {
    throw new SluiceError('SLUICE_ERR_CONFIG_FILE', `cannot read configuration ${file}: ${(e as Error).message}`, { cause: e, context: { path: file } })
  }
  return parseConfig(text, abs, opts)
}

export async function parseConfig(text: string, file: string, opts: LoadOptions): Promise<LoadedConfig> {
  const root = resolve(opts.root ?? findProjectRoot(dirname(resolve(file))))
  const displayFile = displayPath(root, resolve(file))
  const src = new YamlSource(text, displayFile, opts.env ?? process.env)
  const issues = [...src.issues]
  const raw = src.value
  if (issues.length > 0 && raw === undefined) throw configError(issues)

  // Sections and functions that failed validation are left out of `config`; the rest still gets
  // its semantic checks and compiled, so every problem is reported in one pass.
  const invalidConnections = new Set<string>()
  const config = validate(raw, src, opts.connectors, root, file, issues, invalidConnections)
  issues.push(...(config ? semanticChecks(config, opts.connectors, src, invalidConnections) : []))
  const compiled = new Map<string, CompiledFunction>()
  if (config && opts.compile !== false) {
    await Promise.all(
      Object.values(config.functions).map(async (fn) => {
        const at = src.locate(['functions', fn.name, 'code'])
        if (!existsSync(fn.codePath) || !statSync(fn.codePath).isFile()) {
          issues.push({
            ...at,
            code: 'SLUICE_ERR_FUNCTION_NOT_FOUND',
            message: `function code file not found: ${displayPath(root, fn.codePath)} (relative paths start at the project root ${root})`,
          })
          return
        }
        try {
          compiled.set(fn.name, await compileFunction(fn.codePath, { root, functionName: fn.name }))
        } catch (e) {
          const err = e as SluiceError
          issues.push({ ...at, code: err.code, message: err.message })
        }
      }),
    )
  }
  if (issues.length > 0 || !config) throw configError(sortIssues(issues))
  return { config: deepFreeze(config), compiled, notes: src.notes }
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.col - b.col)
}

const topSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    http: Type.Optional(httpSchema),
    admin: Type.Optional(adminSchema),
    store: Type.Optional(storeSchema),
    instance: Type.Optional(instanceSchema),
    workers: Type.Optional(workersSchema),
    log: Type.Optional(logSchema),
    connections: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    functions: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
)

const NAME_MESSAGE = 'is not a valid name: it must start with a letter and use only letters, digits, - and _ (at most 63 characters)'

function validName(name: string, path: Path, src: YamlSource, issues: ConfigIssue[]): boolean {
  if (new RegExp(NAME_PATTERN).test(name)) return true
  issues.push({ ...src.locate(path, true), code: 'SLUICE_ERR_CONFIG_NAME', message: NAME_MESSAGE, path: src.pathString(path) })
  return false
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describeUnion(schema: TSchema): string | undefined {
  const anyOf = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf
  if (!anyOf?.every((s) => s.const !== undefined)) return undefined
  return `must be one of: ${anyOf.map((s) => String(s.const)).join(', ')}`
}

/** TypeBox error path ('/a/0/b') as a path below the checked value. */
function relPath(errorPath: string): Path {
  // Digit segments are sequence indexes (names of functions, connections and outputs start with a letter).
  return errorPath === ''
    ? []
    : errorPath
        .slice(1)
        .split('/')
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')))
}

/** Validates `value` against `schema`, reporting issues with `prefix` prepended to every path. */
function check(schema: TSchema, value: unknown, prefix: Path, src: YamlSource, issues: ConfigIssue[], kindHint?: (path: Path) => ErrorCode | undefined): void {
  const seen = new Set<string>()
  const required = new Set<string>()
  const converted = coerceEnv(schema, value, prefix, src, issues)
  for (const e of Value.Errors(schema, value)) {
    const path = [...prefix, ...relPath(e.path)]
    if (converted.has(path.join('.'))) continue
    // TypeBox follows a missing required key with a type error for its undefined value: one problem, one issue.
    if (e.value === undefined && e.type !== ValueErrorType.ObjectRequiredProperty && required.has(path.join('\u0000'))) continue
    let code: ErrorCode = 'SLUICE_ERR_CONFIG_TYPE'
    let message = e.message.charAt(0).toLowerCase() + e.message.slice(1)
    let at = src.locate(path)
    switch (e.type) {
      case ValueErrorType.ObjectAdditionalProperties: {
        at = src.locate(path, true)
        if ((e.schema as { patternProperties?: object }).patternProperties !== undefined) {
          code = 'SLUICE_ERR_CONFIG_NAME'
          message = NAME_MESSAGE
          break
        }
        code = kindHint?.(path) ?? 'SLUICE_ERR_CONFIG_UNKNOWN_KEY'
        const allowed = Object.keys((e.schema as { properties?: object }).properties ?? {})
        message =
          code === 'SLUICE_ERR_CONFIG_UNKNOWN_KEY'
            ? `is not a known key${allowed.length ? ` (expected one of: ${allowed.join(', ')})` : ''}`
            : `is not a known kind (known kinds: ${allowed.join(', ') || 'none'})`
        break
      }
      case ValueErrorType.ObjectRequiredProperty: {
        required.add(path.join('\u0000'))
        const unset = src.unsetEnv(path)
        code = unset ? 'SLUICE_ERR_CONFIG_ENV' : 'SLUICE_ERR_CONFIG_REQUIRED'
        message = unset ? `is required but \${${unset}} is not set (set it, or write \${${unset}:-default})` : 'is required'
        // Where the variable is written, not the mapping the key was removed from.
        at = src.unsetAt(path) ?? at
        break
      }
      case ValueErrorType.ObjectMinProperties:
      case ValueErrorType.ObjectMaxProperties:
        if (path[path.length - 1] === 'trigger' || path[path.length - 2] === 'outputs') {
          code = 'SLUICE_ERR_CONFIG_TRIGGER_COUNT'
          message = path[path.length - 1] === 'trigger' ? 'must name exactly one trigger kind' : 'must name exactly one output kind'
        }
        break
      case ValueErrorType.Union:
        message = describeUnion(e.schema) ?? message
        break
      case ValueErrorType.StringPattern:
        if ((e.schema as { pattern?: string }).pattern === NAME_PATTERN) {
          code = 'SLUICE_ERR_CONFIG_NAME'
          message = NAME_MESSAGE
        } else {
          const pattern = (e.schema as { pattern?: string }).pattern ?? ''
          message = patternMessage(path, e.value, pattern) ?? `does not match the expected form ${pattern}`
        }
        break
      default:
        message = `${message} (got ${JSON.stringify(e.value) ?? 'nothing'})`
    }
    const key = `${path.join('.')}|${code}`
    if (seen.has(key)) continue
    // A union error on a path that also has a precise nested error adds nothing.
    seen.add(key)
    issues.push({ ...at, code, message, path: src.pathString(path) })
  }
}

function validate(
  raw: unknown,
  src: YamlSource,
  defs: readonly ConnectorDefinition[],
  root: string,
  file: string,
  issues: ConfigIssue[],
  invalidConnections: Set<string>,
): GatewayConfig | undefined {
  if (!isPlainObject(raw)) {
    issues.push({ ...src.locate([]), code: 'SLUICE_ERR_CONFIG_TYPE', message: 'the configuration must be a mapping with a functions: key', path: '' })
    return undefined
  }
  const top = Value.Default(topSchema, raw) as Record<string, unknown>
  for (const k of ['http', 'admin', 'store', 'instance', 'workers', 'log'] as const) if (top[k] === undefined) top[k] = {}
  Value.Default(topSchema, top)
  check(topSchema, top, [], src, issues)

  const byKind = new Map(defs.map((d) => [d.kind, d]))
  const connections: Record<string, ConnectionConfig> = {}
  for (const [name, conn] of Object.entries(isPlainObject(top.connections) ? top.connections : {})) {
    const path = ['connections', name]
    invalidConnections.add(name)
    if (!validName(name, path, src, issues)) continue
    if (!isPlainObject(conn)) {
      issues.push({ ...src.locate(path), code: 'SLUICE_ERR_CONFIG_TYPE', message: 'must be a mapping with a kind: key', path: src.pathString(path) })
      continue
    }
    const kind = conn.kind
    const def = typeof kind === 'string' ? byKind.get(kind) : undefined
    if (!def?.connectionSchema) {
      const available = defs.filter((d) => d.connectionSchema).map((d) => d.kind)
      issues.push({
        ...src.locate([...path, 'kind']),
        code: kind === undefined ? 'SLUICE_ERR_CONFIG_REQUIRED' : 'SLUICE_ERR_CONFIG_UNKNOWN_CONNECTION_KIND',
        message:
          kind === undefined ? 'is required' : `connection kind ${JSON.stringify(kind)} is not a known kind (known kinds: ${available.join(', ') || 'none'})`,
        path: src.pathString([...path, 'kind']),
      })
      continue
    }
    const schema = Type.Composite(
      [Type.Object({ kind: Type.Literal(def.kind) }), connectionCommonSchema, def.connectionSchema as ReturnType<typeof Type.Object>],
      {
        additionalProperties: false,
      },
    )
    const filled = Value.Default(schema, conn) as Record<string, unknown>
    const errorsBefore = issues.length
    check(schema, filled, path, src, issues)
    if (issues.length > errorsBefore) continue
    invalidConnections.delete(name)
    const { kind: _kind, required, ...options } = filled
    connections[name] = { name, kind: def.kind, required: required === true, options }
  }

  const fnSchema = buildFunctionSchema(defs)
  const functions: Record<string, FunctionConfig> = {}
  const fnEntries = isPlainObject(top.functions) ? Object.entries(top.functions) : []
  if (isPlainObject(top.functions) && fnEntries.length === 0) {
    issues.push({ ...src.locate(['functions']), code: 'SLUICE_ERR_CONFIG_REQUIRED', message: 'must declare at least one function', path: 'functions' })
  }
  for (const [name, fnRaw] of fnEntries) {
    const path = ['functions', name]
    if (!validName(name, path, src, issues)) continue
    if (!isPlainObject(fnRaw)) {
      issues.push({ ...src.locate(path), code: 'SLUICE_ERR_CONFIG_TYPE', message: 'must be a mapping with code: and trigger:', path: src.pathString(path) })
      continue
    }
    for (const k of ['batch', 'retry', 'scale'] as const) if (fnRaw[k] === undefined) fnRaw[k] = {}
    const fn = Value.Default(fnSchema, fnRaw) as Record<string, unknown>
    // TypeBox does not descend into Record values for defaults: fill each output's own.
    if (isPlainObject(fn.outputs)) {
      for (const out of Object.values(fn.outputs)) {
        if (!isPlainObject(out)) continue
        for (const [kind, opts] of Object.entries(out)) {
          const schema = byKind.get(kind)?.outputSchema
          if (schema && isPlainObject(opts)) out[kind] = Value.Default(schema, opts)
        }
      }
    }
    const kindHint = (p: Path): ErrorCode | undefined => {
      const parent = p[p.length - 2]
      if (p.length === 4 && parent === 'trigger') return 'SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER'
      if (p.length === 5 && p[2] === 'outputs') return 'SLUICE_ERR_CONFIG_UNKNOWN_OUTPUT'
      return undefined
    }
    const errorsBefore = issues.length
    check(fnSchema, fn, path, src, issues, kindHint)
    if (issues.length > errorsBefore) continue
    const triggerEntry = Object.entries(fn.trigger as Record<string, Record<string, unknown>>)[0]
    if (!triggerEntry) continue
    const [kind, options] = triggerEntry
    const outputs: FunctionConfig['outputs'] = {}
    for (const [outName, out] of Object.entries((fn.outputs ?? {}) as Record<string, Record<string, Record<string, unknown>>>)) {
      const entry = Object.entries(out)[0]
      if (!entry) continue
      outputs[outName] = { kind: entry[0], options: entry[1], ...(typeof entry[1].connection === 'string' ? { connection: entry[1].connection } : {}) }
    }
    const code = fn.code as string
    const timeoutMs = fn.timeoutMs as number
    functions[name] = {
      name,
      code,
      codePath: isAbsolute(code) ? code : resolve(root, code),
      trigger: { kind, options, ...(typeof options.connection === 'string' ? { connection: options.connection } : {}) },
      batch: fn.batch as FunctionConfig['batch'],
      retry: fn.retry as FunctionConfig['retry'],
      timeoutMs,
      cpuTimeMs: (fn.cpuTimeMs as number | undefined) ?? timeoutMs,
      memoryMb: fn.memoryMb as number,
      scale: fn.scale as FunctionConfig['scale'],
      maxBacklog: fn.maxBacklog as number,
      orderKey: fn.orderKey as string,
      outputs,
    }
  }
  // A section that is not a mapping was reported above; {} keeps the semantic checks safe.
  const section = <K extends 'http' | 'admin' | 'store' | 'instance' | 'workers' | 'log'>(k: K) => (isPlainObject(top[k]) ? top[k] : {}) as GatewayConfig[K]
  const workers = section('workers')
  return {
    file,
    root,
    http: section('http'),
    admin: section('admin'),
    store: section('store'),
    instance: section('instance'),
    workers: { ...workers, hosts: workers.hosts ?? Math.max(1, availableParallelism()) },
    log: section('log'),
    connections,
    functions,
  }
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) deepFreeze(x)
  }
  return v
}
