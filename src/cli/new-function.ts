/**
 * `sluice new <name> --trigger <kind>`: writes functions/<name>.ts from the trigger's template and
 * adds the function's block under `functions:` (and a connection of that kind, with placeholder
 * settings, when the config has none). The config file is edited, not re-serialised: the yaml
 * Document gives the positions, the new blocks are rendered by yaml from Document nodes and
 * inserted there, so every other byte of the file (comments, blank lines, quoting, spacing)
 * stays as it was. The result is parsed again and checked before anything is written.
 */
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { Document, isCollection, isMap, isScalar, parseDocument, visit, type Pair, type YAMLMap } from 'yaml'
import { findProjectRoot } from '../config/paths.js'
import { NAME_PATTERN } from '../config/schema.js'
import { SluiceError } from '../errors.js'
import { TRIGGER_KINDS, functionTemplate, type TriggerKind } from './templates.js'

export interface NewFunctionOptions {
  name: string
  trigger: string
  /** The configuration file to add the function to. */
  config: string
}

export interface NewFunctionResult {
  /** Absolute path of the function module written. */
  file: string
  /** Absolute path of the configuration file changed. */
  config: string
  /** The connection the trigger uses, and whether it was added (with placeholder settings). */
  connection?: { name: string; added: boolean }
}

type Json = Record<string, unknown>

/** Placeholder connections: comment lines and settings that validate offline. */
const PLACEHOLDERS: Record<Exclude<TriggerKind, 'http' | 'timer'>, (fn: string) => { comment: string[]; value: Json }> = {
  mqtt: () => ({
    comment: ['placeholder: your MQTT broker (MQTT_URL when set); url: embedded starts a built-in one'],
    value: { kind: 'mqtt', url: '${MQTT_URL:-mqtt://127.0.0.1:1883}' },
  }),
  amqp: () => ({
    comment: ['placeholder: your RabbitMQ (AMQP_URL when set)'],
    value: { kind: 'amqp', url: '${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}' },
  }),
  kafka: () => ({
    comment: ['placeholder: your Kafka bootstrap brokers as host:port'],
    value: { kind: 'kafka', brokers: ['127.0.0.1:9092'] },
  }),
  eventhubs: (fn) => ({
    comment: [
      "placeholder: set EVENTHUB_CONNECTION to your namespace's connection string (the default is the local emulator's)",
      'and eventHub to the hub to read',
    ],
    value: {
      kind: 'eventhubs',
      connectionString:
        '${EVENTHUB_CONNECTION:-Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true}',
      eventHub: fn,
    },
  }),
}

/** The trigger block of a new function and the comment above it. */
function triggerOf(kind: TriggerKind, fn: string, connection: string | undefined): { comment: string[]; trigger: Json } {
  switch (kind) {
    case 'http':
      return {
        comment: [`GET or POST /api/${fn} (anonymous: anyone who reaches the port may call it; auth: function asks for a key)`],
        trigger: { http: { route: fn, auth: 'anonymous' } },
      }
    case 'mqtt':
      return { comment: [`messages published to ${fn}/# on connection ${connection}, in batches`], trigger: { mqtt: { connection, topic: `${fn}/#`, qos: 1 } } }
    case 'amqp':
      return {
        comment: [`messages of queue ${fn} (declared when missing), in batches`],
        trigger: { amqp: { connection, queue: fn, declare: { durable: true } } },
      }
    case 'kafka':
      return { comment: [`records of topic ${fn}, in order per partition`], trigger: { kafka: { connection, topic: fn } } }
    case 'eventhubs':
      return {
        comment: [`events of the hub of connection ${connection}, in order per partition`],
        trigger: { eventhubs: { connection, consumerGroup: '$Default' } },
      }
    case 'timer':
      return { comment: ['every 5 minutes (cron with seconds first)'], trigger: { timer: { schedule: '0 */5 * * * *' } } }
  }
}

function pairOf(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && p.key.value === key)
}

function column(src: string, offset: number): number {
  return offset - (src.lastIndexOf('\n', offset - 1) + 1)
}

/** Offset of the start of the line after the one holding `offset` (the end when there is none). */
function nextLineStart(src: string, offset: number): number {
  if (offset > 0 && src[offset - 1] === '\n') return offset
  const nl = src.indexOf('\n', offset)
  return nl === -1 ? src.length : nl + 1
}

/** Indentation of a block map's keys and the step below them, as the file writes them. */
function layoutOf(src: string, map: YAMLMap | undefined, fallback: { indent: number; step: number }): { indent: number; step: number; blankLines: boolean } {
  const first = map?.items[0]
  if (!map || !first || !isScalar(first.key) || !first.key.range) return { ...fallback, blankLines: false }
  const indent = column(src, first.key.range[0])
  const inner = map.items.map((p) => p.value).find((v): v is YAMLMap => isMap(v) && !v.flow && v.items.length > 0)
  const innerKey = inner?.items[0]?.key
  const step = isScalar(innerKey) && innerKey.range ? column(src, innerKey.range[0]) - indent : fallback.step
  const blankLines = map.items.slice(1).some((p) => isScalar(p.key) && p.key.spaceBefore === true)
  return { indent, step: step > 0 ? step : fallback.step, blankLines }
}

/** `key: value` rendered by yaml as a block entry at `indent`, with comment lines above it. */
function renderEntry(key: string, value: Json, o: { indent: number; step: number; comment: string[]; flow: 'whole' | string[] }): string {
  const doc = new Document({ [key]: value })
  const node = doc.get(key, true)
  if (isMap(node)) {
    if (o.flow === 'whole') node.flow = true
    else
      for (const k of o.flow) {
        const n = node.get(k, true)
        if (isCollection(n)) n.flow = true
      }
  }
  // Cron expressions and values with # read better (and safer) quoted.
  visit(doc, {
    Scalar(_, n) {
      if (typeof n.value === 'string' && /[\s*#]/.test(n.value)) n.type = 'QUOTE_DOUBLE'
    },
  })
  const pad = ' '.repeat(o.indent)
  const body = doc
    .toString({ indent: o.step, lineWidth: 0 })
    .trimEnd()
    .split('\n')
    .map((l) => pad + l)
  return `${o.comment.map((c) => `${pad}# ${c}\n`).join('')}${body.join('\n')}\n`
}

interface Edit {
  at: number
  /** Characters replaced from `at` on (0: a pure insertion). */
  remove: number
  text: string
}

/** Where a new entry of a top-level block mapping goes, or why it cannot. */
function appendTo(src: string, pair: Pair | undefined, what: string, layout: { blankLines: boolean }): { at: number; lead: string } | 'missing' {
  if (!pair) return 'missing'
  const v = pair.value
  if (v === null || (isScalar(v) && (v.value === null || v.value === ''))) {
    const keyRange = isScalar(pair.key) ? pair.key.range : undefined
    return { at: nextLineStart(src, keyRange?.[1] ?? 0), lead: '' }
  }
  if (!isMap(v) || v.flow || !v.range) {
    throw new SluiceError(
      'SLUICE_ERR_CLI_NEW_LAYOUT',
      `${what}: is not written as a block mapping (one entry per line), so sluice new cannot add to it; nothing was changed`,
    )
  }
  const at = nextLineStart(src, v.range[1])
  return { at, lead: (at === src.length && !src.endsWith('\n') ? '\n' : '') + (layout.blankLines ? '\n' : '') }
}

/** The first line of the comment lines directly above the line at `offset` (to keep them with it). */
function aboveComments(src: string, offset: number): number {
  let at = src.lastIndexOf('\n', offset - 1) + 1
  while (at > 0) {
    const prev = src.lastIndexOf('\n', at - 2) + 1
    if (!src.slice(prev, at).startsWith('#')) break
    at = prev
  }
  return at
}

function apply(src: string, edits: Edit[]): string {
  let out = src
  for (const e of [...edits].sort((a, b) => b.at - a.at)) out = out.slice(0, e.at) + e.text + out.slice(e.at + e.remove)
  return out
}

/** Adds the function; see the module comment. Throws coded errors and then writes nothing. */
export function addFunction(o: NewFunctionOptions): NewFunctionResult {
  if (!new RegExp(NAME_PATTERN).test(o.name)) {
    throw new SluiceError(
      'SLUICE_ERR_CLI_USAGE',
      `function name ${JSON.stringify(o.name)} is not allowed: use letters, digits, - and _, starting with a letter (at most 63)`,
    )
  }
  if (!(TRIGGER_KINDS as readonly string[]).includes(o.trigger)) {
    throw new SluiceError('SLUICE_ERR_CLI_USAGE', `--trigger must be one of ${TRIGGER_KINDS.join(', ')} (got ${JSON.stringify(o.trigger)})`)
  }
  const kind = o.trigger as TriggerKind
  const configFile = resolve(o.config)
  let src: string
  try {
    src = readFileSync(configFile, 'utf8')
  } catch (e) {
    throw new SluiceError(
      'SLUICE_ERR_CONFIG_FILE',
      `cannot read ${o.config} (${(e as Error).message}); run sluice new in the project folder or pass --config`,
      { cause: e, context: { path: o.config } },
    )
  }
  const doc = parseDocument(src)
  const bad = doc.errors[0]
  if (bad) {
    const pos = bad.linePos?.[0]
    throw new SluiceError(
      'SLUICE_ERR_CONFIG_YAML',
      `${o.config}${pos ? `:${pos.line}:${pos.col}` : ''} ${bad.message.split('\n')[0]}; fix it before adding a function`,
      { context: { path: o.config } },
    )
  }
  const top = doc.contents
  if (top !== null && !(isMap(top) && !top.flow)) {
    throw new SluiceError('SLUICE_ERR_CLI_NEW_LAYOUT', `${o.config} is not a YAML mapping of settings (http:, connections:, functions:); nothing was changed`)
  }
  const fnsPair = top ? pairOf(top, 'functions') : undefined
  const connsPair = top ? pairOf(top, 'connections') : undefined
  const fns = isMap(fnsPair?.value) ? fnsPair.value : undefined
  const conns = isMap(connsPair?.value) ? connsPair.value : undefined

  const root = findProjectRoot(dirname(configFile))
  const code = `functions/${o.name}.ts`
  const file = join(root, code)
  if (fns && pairOf(fns, o.name)) {
    throw new SluiceError('SLUICE_ERR_CLI_NEW_EXISTS', `${o.config} has a function named ${o.name} already; nothing was changed`)
  }
  if (existsSync(file)) {
    throw new SluiceError('SLUICE_ERR_CLI_NEW_EXISTS', `${relative(process.cwd(), file) || file} exists already; nothing was changed`, {
      context: { path: file },
    })
  }

  const fnLayout = layoutOf(src, fns, { indent: 2, step: 2 })
  const connLayout = layoutOf(src, conns, { indent: fnLayout.indent, step: fnLayout.step })
  const edits: Edit[] = []

  let connection: NewFunctionResult['connection']
  let newConnection: Json | undefined
  if (kind !== 'http' && kind !== 'timer') {
    const existing = conns?.items.find((p) => isMap(p.value) && p.value.get('kind') === kind)
    if (existing && isScalar(existing.key)) {
      connection = { name: String(existing.key.value), added: false }
    } else {
      let name: string = kind
      for (let i = 2; conns && pairOf(conns, name); i++) name = `${kind}-${i}`
      connection = { name, added: true }
      const p = PLACEHOLDERS[kind](o.name)
      newConnection = p.value
      const entry = renderEntry(name, p.value, { ...connLayout, comment: p.comment, flow: 'whole' })
      const where = appendTo(src, connsPair, 'connections', connLayout)
      if (where !== 'missing') edits.push({ at: where.at, remove: 0, text: where.lead + entry })
      else {
        const block = `connections:\n${entry}\n`
        const fnKey = fnsPair && isScalar(fnsPair.key) ? fnsPair.key.range?.[0] : undefined
        if (fnKey !== undefined) edits.push({ at: aboveComments(src, fnKey), remove: 0, text: block })
        else edits.push({ at: src.length, remove: 0, text: `${src.length > 0 && !src.endsWith('\n') ? '\n' : ''}\n${block}` })
      }
    }
  }

  const t = triggerOf(kind, o.name, connection?.name)
  const fnValue: Json = { code, trigger: t.trigger }
  const entry = renderEntry(o.name, fnValue, { ...fnLayout, comment: t.comment, flow: ['trigger'] })
  const where = appendTo(src, fnsPair, 'functions', fnLayout)
  if (where !== 'missing') edits.push({ at: where.at, remove: 0, text: where.lead + entry })
  else edits.push({ at: src.length, remove: 0, text: `${src.length > 0 && !src.endsWith('\n') ? '\n' : ''}${src.length > 0 ? '\n' : ''}functions:\n${entry}` })

  const updated = apply(src, edits)
  // The edit must mean exactly "the old settings plus these entries": checked before writing.
  const expected = (doc.toJS() ?? {}) as Json
  expected.functions = { ...((expected.functions as Json | null) ?? {}), [o.name]: fnValue }
  if (newConnection && connection) expected.connections = { ...((expected.connections as Json | null) ?? {}), [connection.name]: newConnection }
  const check = parseDocument(updated)
  if (check.errors.length > 0 || !isDeepStrictEqual(check.toJS(), expected)) {
    throw new SluiceError(
      'SLUICE_ERR_CLI_NEW_LAYOUT',
      `sluice new could not add ${o.name} to ${o.config} without changing other settings (an unusual layout); add it by hand; nothing was changed`,
    )
  }

  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, functionTemplate(kind, o.name), { flag: 'wx' })
  try {
    writeFileSync(configFile, updated)
  } catch (e) {
    unlinkSync(file)
    throw new SluiceError('SLUICE_ERR_CONFIG_FILE', `cannot write ${o.config} (${(e as Error).message}); nothing was changed`, { cause: e })
  }
  return { file, config: configFile, ...(connection ? { connection } : {}) }
}

/** `sluice new`: adds the function and prints what changed and what to do next. */
export function runNew(o: NewFunctionOptions, out: NodeJS.WritableStream = process.stdout): number {
  const r = addFunction(o)
  const show = (p: string) => relative(process.cwd(), p) || p
  const lines = [`Added function ${o.name} (${o.trigger} trigger):`, `  ${show(r.file)}`, `  ${show(r.config)}: functions.${o.name}`]
  if (r.connection?.added) lines.push(`  ${show(r.config)}: connections.${r.connection.name} (placeholder settings: point it at your broker)`)
  else if (r.connection) lines.push(`  it uses connection ${r.connection.name}`)
  lines.push('', `Next: edit ${show(r.file)}, then npx sluice validate${o.config === 'config/gateway.yaml' ? '' : ` --config ${o.config}`}`, '')
  out.write(lines.join('\n'))
  return 0
}
