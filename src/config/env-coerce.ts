/**
 * ${VAR} substitution yields strings (never re-read as YAML). This converts an unquoted substituted
 * value to a number or a boolean where the schema accepts one and the text reads as one, so
 * `port: ${PORT}` is a number while `key: ${KEY}` stays exactly the string in the environment.
 */
import type { TSchema } from '@sinclair/typebox'
import type { ConfigIssue } from './issues.js'
import type { Path, YamlSource } from './yaml-source.js'

type Kind = 'number' | 'boolean' | 'string'

interface Shape {
  type?: unknown
  const?: unknown
  anyOf?: TSchema[]
  properties?: Record<string, TSchema>
  patternProperties?: Record<string, TSchema>
  additionalProperties?: unknown
  items?: TSchema
}

/** The schemas that may apply at `rel` below `schema` (every branch of a union). */
function schemasAt(schema: TSchema, rel: Path): TSchema[] {
  if (rel.length === 0) return [schema]
  const s = schema as Shape
  if (s.anyOf) return s.anyOf.flatMap((sub) => schemasAt(sub, rel))
  const [seg, ...rest] = rel
  if (s.type === 'object' && typeof seg === 'string') {
    const prop = s.properties?.[seg]
    if (prop) return schemasAt(prop, rest)
    const pattern = Object.values(s.patternProperties ?? {})
    if (pattern.length > 0) return pattern.flatMap((sub) => schemasAt(sub, rest))
    return typeof s.additionalProperties === 'object' ? schemasAt(s.additionalProperties as TSchema, rest) : []
  }
  if (s.type === 'array' && typeof seg === 'number' && s.items) return schemasAt(s.items, rest)
  return []
}

/** The scalar kinds `schema` accepts (an unconstrained schema accepts none in particular). */
function kindsOf(schema: TSchema, into = new Set<Kind>()): Set<Kind> {
  const s = schema as Shape
  if (s.type === 'number' || s.type === 'integer' || typeof s.const === 'number') into.add('number')
  if (s.type === 'boolean' || typeof s.const === 'boolean') into.add('boolean')
  if (s.type === 'string' || typeof s.const === 'string') into.add('string')
  for (const sub of s.anyOf ?? []) kindsOf(sub, into)
  return into
}

const NUMBER = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/

function convert(text: string, kinds: Set<Kind>): number | boolean | undefined {
  const t = text.trim()
  if (kinds.has('number') && NUMBER.test(t)) return Number(t)
  if (kinds.has('boolean') && /^(true|false)$/i.test(t)) return t.toLowerCase() === 'true'
  return undefined
}

function valueAt(root: unknown, rel: Path): { parent: Record<string | number, unknown>; key: string | number } | undefined {
  let node = root
  for (const seg of rel.slice(0, -1)) {
    if (typeof node !== 'object' || node === null) return undefined
    node = (node as Record<string | number, unknown>)[seg]
  }
  const key = rel[rel.length - 1]
  if (key === undefined || typeof node !== 'object' || node === null) return undefined
  return { parent: node as Record<string | number, unknown>, key }
}

/**
 * Converts, in `value` (checked against `schema`, found at `prefix` in the file), the substituted
 * strings the schema wants as numbers or booleans. A string the schema cannot take and that does
 * not convert is reported at the value, naming its variables. Returns the key paths reported
 * (dot-joined), so the schema check does not report them again.
 */
export function coerceEnv(schema: TSchema, value: unknown, prefix: Path, src: YamlSource, issues: ConfigIssue[]): Set<string> {
  const reported = new Set<string>()
  for (const { path, names } of src.fromEnv()) {
    if (path.length <= prefix.length || prefix.some((p, i) => path[i] !== p)) continue
    const rel = path.slice(prefix.length)
    const at = valueAt(value, rel)
    const text = at?.parent[at.key]
    if (!at || typeof text !== 'string') continue
    const kinds = new Set<Kind>()
    for (const s of schemasAt(schema, rel)) kindsOf(s, kinds)
    if (!kinds.has('number') && !kinds.has('boolean')) continue
    const converted = convert(text, kinds)
    if (converted !== undefined) {
      at.parent[at.key] = converted
      continue
    }
    if (kinds.has('string')) continue
    reported.add(path.join('.'))
    const want = [...kinds].map((k) => (k === 'number' ? 'a number' : 'true or false')).join(' or ')
    issues.push({
      ...src.locate(path),
      code: 'SLUICE_ERR_CONFIG_TYPE',
      message: `must be ${want}, but ${names.map((n) => `\${${n}}`).join(', ')} gives ${JSON.stringify(text)}`,
      path: src.pathString(path),
    })
  }
  return reported
}
