/**
 * Generated reference files, all derived from the one schema declaration and the one error
 * registry so they cannot drift: `npm run docs` writes them, test/docs.test.ts checks the
 * committed copies are current. Every function here is pure (no I/O, no clock).
 */
import { ERRORS, type ErrorCode } from '../errors.js'
import type { ConnectorDefinition } from '../sdk/index.js'
import { CONNECTORS } from './connectors.js'
import { buildConfigSchema, NAME_PATTERN } from './schema.js'

export const JSON_SCHEMA_DIALECT = 'http://json-schema.org/draft-07/schema#'
export const CONFIG_SCHEMA_ID = 'urn:sluice:schema:gateway-config'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * A plain JSON copy of a TypeBox schema (TypeBox's symbol keys dropped) as an editor should read
 * it: a key that has a default is not required in the file, since the loader fills it in.
 */
function plain(schema: unknown): Json {
  if (Array.isArray(schema)) return schema.map(plain)
  if (!isObject(schema)) return schema as Json
  const out: JsonObject = {}
  for (const key of Object.keys(schema)) out[key] = plain(schema[key])
  const props = out.properties
  if (Array.isArray(out.required) && isObject(props)) {
    const required = out.required.filter((k) => typeof k === 'string' && !(isObject(props[k]) && props[k].default !== undefined))
    if (required.length > 0) out.required = required
    else delete out.required
  }
  return out
}

/** The JSON Schema (draft-07) of the configuration file, for editor completion and checks. */
export function configJsonSchema(defs: readonly ConnectorDefinition[] = CONNECTORS): JsonObject {
  return { $schema: JSON_SCHEMA_DIALECT, $id: CONFIG_SCHEMA_ID, ...(plain(buildConfigSchema(defs)) as JsonObject) }
}

const GENERATED = (source: string) => `<!-- Generated from ${source} by \`npm run docs\`. Do not edit by hand. -->`

/** Escapes text for one cell of a Markdown table. */
function cell(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|')
}

const AREAS: Record<string, string> = {
  CONFIG: 'Configuration',
  FUNCTION: 'Functions (user code)',
  SANDBOX: 'Sandbox and worker hosts',
  ROUTER: 'Router and delivery',
  EVENT: 'Router and delivery',
  OUTPUT: 'Router and delivery',
  DEAD: 'Router and delivery',
  STORE: 'State store',
  CONNECTOR: 'Connectors',
  HTTP: 'HTTP surface',
  CLI: 'Command line',
}

function areaOf(code: string): string {
  const word = code.split('_')[2] ?? ''
  return AREAS[word] ?? 'Other'
}

/** docs/errors.md: every error code with its HTTP status, whether retrying can help, meaning and remedy. */
export function errorsMarkdown(): string {
  const lines = [
    GENERATED('src/errors.ts'),
    '',
    '# Error codes',
    '',
    'Every sluice error carries a stable `code`; match on it, never on the message or the class.',
    'Codes are never reused. **Retriable** says whether the same thing can succeed later (the',
    "router retries those per the function's retry policy). **HTTP** is the status of an HTTP",
    'answer carrying the error; command-line errors have an exit code instead.',
  ]
  const byArea = new Map<string, ErrorCode[]>()
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const area = areaOf(code)
    byArea.set(area, [...(byArea.get(area) ?? []), code])
  }
  for (const [area, codes] of byArea) {
    lines.push('', `## ${area}`, '', '| Code | HTTP | Retriable | Meaning | What to do |', '| --- | --- | --- | --- | --- |')
    for (const code of codes) {
      const e = ERRORS[code]
      const status = e.status >= 100 && e.status <= 599 ? String(e.status) : `— (exit code ${e.status})`
      lines.push(`| \`${code}\` | ${status} | ${e.retriable ? 'yes' : 'no'} | ${cell(e.summary)} | ${cell(e.hint)} |`)
    }
  }
  return `${lines.join('\n')}\n`
}

interface Row {
  path: string
  type: string
  required: boolean
  default: string
  description: string
}

function code(v: unknown): string {
  return `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``
}

function enumValues(s: JsonObject): Json[] | undefined {
  const anyOf = s.anyOf
  if (!Array.isArray(anyOf) || anyOf.length === 0 || !anyOf.every((m) => isObject(m) && m.const !== undefined)) return undefined
  return anyOf.map((m) => (m as JsonObject).const as Json)
}

function typeOf(s: JsonObject): string {
  const values = enumValues(s)
  if (values) return `one of ${values.map(code).join(', ')}`
  if (s.const !== undefined) return code(s.const)
  switch (s.type) {
    case 'integer':
    case 'number': {
      const min = typeof s.minimum === 'number' ? s.minimum : undefined
      const max = typeof s.maximum === 'number' ? s.maximum : undefined
      const range = min !== undefined && max !== undefined ? ` ${min}–${max}` : min !== undefined ? ` ≥ ${min}` : max !== undefined ? ` ≤ ${max}` : ''
      return `${s.type}${range}`
    }
    case 'string':
      return 'string'
    case 'boolean':
      return 'boolean'
    case 'array':
      return `list of ${isObject(s.items) ? typeOf(s.items) : 'values'}`
    case 'object': {
      if (isObject(s.patternProperties)) return 'mapping of names'
      const keys = isObject(s.properties) ? Object.keys(s.properties) : []
      if (s.minProperties === 1 && s.maxProperties === 1) return `exactly one of ${keys.map(code).join(', ') || '(none in this build)'}`
      return 'mapping'
    }
    default: {
      if (!Array.isArray(s.anyOf)) return 'any'
      // A union of scalars (e.g. boolean or string) reads as such; unions of mappings are listed below.
      const forms = s.anyOf.filter(isObject)
      const scalar =
        forms.length === s.anyOf.length && forms.every((f) => f.type === 'boolean' || f.type === 'string' || f.type === 'integer' || f.type === 'number')
      return scalar ? forms.map(typeOf).join(' or ') : 'one of the forms below'
    }
  }
}

function collect(s: JsonObject, path: string, required: boolean, rows: Row[]): void {
  if (path !== '') {
    rows.push({
      path,
      type: typeOf(s),
      required: required && s.default === undefined,
      default: s.default === undefined ? '' : code(s.default),
      description: typeof s.description === 'string' ? s.description : '',
    })
  }
  collectProperties(s, path, rows)
  if (isObject(s.patternProperties)) {
    for (const [pattern, prop] of Object.entries(s.patternProperties)) {
      if (isObject(prop)) collect(prop, child(path, pattern === NAME_PATTERN ? '<name>' : '<key>'), false, rows)
    }
  }
  // One of several object forms (a connection per kind): list each form's keys, marked with its kind.
  if (Array.isArray(s.anyOf) && !enumValues(s)) {
    for (const member of s.anyOf) {
      if (!isObject(member)) continue
      const kind = isObject(member.properties) && isObject(member.properties.kind) ? member.properties.kind.const : undefined
      const before = rows.length
      collectProperties(member, path, rows)
      if (kind !== undefined) for (const r of rows.slice(before)) r.description = `(kind ${code(kind)}) ${r.description}`.trim()
    }
  }
}

function child(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`
}

function collectProperties(s: JsonObject, path: string, rows: Row[]): void {
  if (!isObject(s.properties)) return
  const req = Array.isArray(s.required) ? s.required : []
  for (const [key, prop] of Object.entries(s.properties)) if (isObject(prop)) collect(prop, child(path, key), req.includes(key), rows)
}

/** docs/configuration.md: every key path of the configuration file with its type, default and meaning. */
export function configMarkdown(defs: readonly ConnectorDefinition[] = CONNECTORS): string {
  const schema = configJsonSchema(defs)
  const rows: Row[] = []
  collect(schema, '', true, rows)
  const lines = [
    GENERATED('the configuration schema (src/config/schema.ts and connectors/*/options.ts)'),
    '',
    '# Configuration reference',
    '',
    typeof schema.description === 'string' ? schema.description : '',
    '',
    '- Unknown keys are errors, and every error names `file:line:col` and the key path; all errors are reported at once.',
    '- A key with a default may be left out. `<name>` stands for a name you choose: a letter, then letters, digits, `-` or `_` (at most 63 characters).',
    '- `${VAR}` reads the environment, `${VAR:-default}` falls back to `default`, `$${` is a literal `${`. The value is used as the string it is, never read as YAML (a `#`, `&` or `: ` in a secret is kept); unquoted, it becomes a number or `true`/`false` where the key takes one (so `port: ${PORT}` is a number), and a value that does not convert is an error naming the variable. When a variable that is the whole value is unset the key is left out (an error at the variable when the key is required).',
    "- Relative paths (`code`, `store.path`) start at the project root: the nearest folder at or above the config file that holds a `package.json`, else the config file's own folder; never the current directory. `sluice validate` prints the root it used.",
    `- Editors can check the file against the JSON Schema \`schema/sluice.schema.json\` (\`$id\` \`${CONFIG_SCHEMA_ID}\`), e.g. with the comment \`# yaml-language-server: $schema=../schema/sluice.schema.json\`.`,
  ]
  const sections = new Map<string, Row[]>()
  for (const row of rows) {
    const top = row.path.split(/[.[]/)[0] ?? row.path
    sections.set(top, [...(sections.get(top) ?? []), row])
  }
  for (const [top, list] of sections) {
    lines.push('', `## \`${top}\``, '', '| Key | Type | Required | Default | Description |', '| --- | --- | --- | --- | --- |')
    for (const r of list) lines.push(`| \`${r.path}\` | ${cell(r.type)} | ${r.required ? 'yes' : 'no'} | ${cell(r.default)} | ${cell(r.description)} |`)
  }
  return `${lines.join('\n')}\n`
}

/** The generated files, relative to the project root, with their current content. */
export function generatedFiles(defs: readonly ConnectorDefinition[] = CONNECTORS): Record<string, string> {
  return {
    'schema/sluice.schema.json': `${JSON.stringify(configJsonSchema(defs), null, 2)}\n`,
    'docs/errors.md': errorsMarkdown(),
    'docs/configuration.md': configMarkdown(defs),
  }
}
