/**
 * The generated reference files (schema/sluice.schema.json, docs/errors.md, docs/configuration.md)
 * stay in step with the schema and the error registry they come from.
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { CONNECTORS } from '../src/config/connectors.js'
import { configJsonSchema, configMarkdown, errorsMarkdown, generatedFiles } from '../src/config/docs.js'
import { buildConfigSchema, buildFunctionSchema } from '../src/config/schema.js'
import { ERRORS } from '../src/errors.js'

const root = resolve(import.meta.dirname, '..')
const read = (rel: string) => readFileSync(join(root, rel), 'utf8')

type Schema = { [key: string]: unknown }

const KEYWORDS = new Set([
  '$schema',
  '$id',
  'title',
  'description',
  'default',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'patternProperties',
  'minProperties',
  'maxProperties',
  'anyOf',
  'const',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'items',
  'minItems',
  'uniqueItems',
])

/**
 * A validator for the JSON Schema keywords in KEYWORDS, enough to check a config against the
 * committed schema file the way an editor would. Returns the JSON pointers of failures.
 */
function validate(s: Schema, v: unknown, at = ''): string[] {
  const fail = [at || '/']
  const isObj = typeof v === 'object' && v !== null && !Array.isArray(v)
  const t = s.type
  if (t === 'object' && !isObj) return fail
  if (t === 'array' && !Array.isArray(v)) return fail
  if (t === 'string' && typeof v !== 'string') return fail
  if (t === 'integer' && !Number.isInteger(v)) return fail
  if (t === 'boolean' && typeof v !== 'boolean') return fail
  if ('const' in s && s.const !== v) return fail
  if (Array.isArray(s.anyOf) && !s.anyOf.some((m) => validate(m as Schema, v, at).length === 0)) return fail
  if (typeof v === 'number' && ((typeof s.minimum === 'number' && v < s.minimum) || (typeof s.maximum === 'number' && v > s.maximum))) return fail
  if (typeof v === 'string') {
    if ((typeof s.minLength === 'number' && v.length < s.minLength) || (typeof s.maxLength === 'number' && v.length > s.maxLength)) return fail
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) return fail
  }
  const errors: string[] = []
  if (Array.isArray(v)) {
    if (typeof s.minItems === 'number' && v.length < s.minItems) return fail
    if (s.uniqueItems === true && new Set(v.map((x) => JSON.stringify(x))).size !== v.length) return fail
    if (s.items) v.forEach((x, n) => errors.push(...validate(s.items as Schema, x, `${at}/${n}`)))
  }
  if (isObj) {
    const o = v as Record<string, unknown>
    const keys = Object.keys(o)
    if ((typeof s.minProperties === 'number' && keys.length < s.minProperties) || (typeof s.maxProperties === 'number' && keys.length > s.maxProperties))
      return fail
    for (const k of (s.required as string[] | undefined) ?? []) if (!(k in o)) errors.push(`${at}/${k}`)
    const props = (s.properties ?? {}) as Record<string, Schema>
    const patterns = Object.entries((s.patternProperties ?? {}) as Record<string, Schema>)
    for (const k of keys) {
      const p = `${at}/${k}`
      const matched = patterns.filter(([re]) => new RegExp(re, 'u').test(k))
      if (k in props) errors.push(...validate(props[k] as Schema, o[k], p))
      for (const [, ps] of matched) errors.push(...validate(ps, o[k], p))
      if (!(k in props) && matched.length === 0 && s.additionalProperties === false) errors.push(p)
    }
  }
  return errors
}

function keywordsOf(s: unknown, out = new Set<string>(), inMap = false): Set<string> {
  if (Array.isArray(s)) s.forEach((x) => keywordsOf(x, out))
  else if (typeof s === 'object' && s !== null) {
    for (const [k, v] of Object.entries(s)) {
      if (!inMap) out.add(k)
      // Names under properties/patternProperties are keys of the config, not keywords; a default or const is data.
      if (k === 'default' || k === 'const') continue
      keywordsOf(v, out, !inMap && (k === 'properties' || k === 'patternProperties'))
    }
  }
  return out
}

describe('generated reference files', () => {
  it.each(Object.entries(generatedFiles()))('%s is up to date', (rel, expected) => {
    let committed: string | undefined
    try {
      committed = read(rel)
    } catch {
      committed = undefined
    }
    expect(committed, `${rel} is missing: run npm run docs`).toBeDefined()
    expect(committed === expected, `${rel} is out of date with the schema/error registry: run npm run docs`).toBe(true)
  })

  it('lists every error code in docs/errors.md', () => {
    const md = errorsMarkdown()
    for (const code of Object.keys(ERRORS)) expect(md).toContain(`| \`${code}\` |`)
  })

  it('documents every configuration key with its default', () => {
    const md = configMarkdown()
    expect(md).toContain('| `functions.<name>.batch.maxSize` | integer 1–10000 | no | `100` |')
    expect(md).toContain('| `functions.<name>.code` | string | yes |')
    expect(md).toContain('| `http.port` | integer 0–65535 | no | `7071` |')
    for (const d of CONNECTORS) expect(md).toContain(`\`functions.<name>.trigger.${d.kind}\``)
  })
})

describe('error registry', () => {
  it('uses SLUICE_ERR_<AREA>_<WHAT> codes', () => {
    for (const code of Object.keys(ERRORS)) expect(code).toMatch(/^SLUICE_ERR_[A-Z]+(_[A-Z]+)*$/)
  })

  it('gives every code a meaning and a remedy', () => {
    for (const [code, e] of Object.entries(ERRORS)) {
      expect(e.summary.length, code).toBeGreaterThan(0)
      expect(e.hint.length, code).toBeGreaterThan(0)
    }
  })
})

describe('JSON Schema of the configuration', () => {
  const file = JSON.parse(read('schema/sluice.schema.json')) as Schema
  const demo = parseYaml(read('config/gateway.yaml')) as Record<string, unknown>

  it('declares its dialect and id and describes functions', () => {
    expect(file.$schema).toBe('http://json-schema.org/draft-07/schema#')
    expect(typeof file.$id).toBe('string')
    expect((file.properties as Schema).functions).toBeDefined()
    expect(file).toEqual(configJsonSchema())
  })

  it('uses only keywords the check below understands', () => {
    expect([...keywordsOf(file)].filter((k) => !KEYWORDS.has(k))).toEqual([])
  })

  it('accepts the demo configuration config/gateway.yaml', () => {
    expect(validate(file, demo)).toEqual([])
    // The TypeBox schema it is generated from agrees, once defaults are filled in as the loader does
    // (per function: Value.Default does not descend into records).
    const schema = buildConfigSchema(CONNECTORS)
    const filled = Value.Default(schema, structuredClone(demo)) as { functions: Record<string, unknown>; connections?: Record<string, { kind: string }> }
    const fnSchema = buildFunctionSchema(CONNECTORS)
    for (const [name, fn] of Object.entries(filled.functions)) filled.functions[name] = Value.Default(fnSchema, fn)
    for (const [name, conn] of Object.entries(filled.connections ?? {})) {
      const def = CONNECTORS.find((d) => d.kind === conn.kind)
      if (def?.connectionSchema)
        (filled.connections as Record<string, unknown>)[name] = { ...(Value.Default(def.connectionSchema, { ...conn }) as object), kind: conn.kind }
    }
    expect([...Value.Errors(schema, filled)].map((e) => `${e.path} ${e.message}`)).toEqual([])
    expect(Value.Check(schema, filled)).toBe(true)
  })

  it('does not require keys that have defaults', () => {
    const fn = ((file.properties as Schema).functions as Schema).patternProperties as Record<string, Schema>
    const [functionSchema] = Object.values(fn)
    expect(functionSchema?.required).toEqual(['code', 'trigger'])
  })

  it('rejects an unknown key, a wrong type and an invalid name', () => {
    const fns = demo.functions as Record<string, Record<string, unknown>>
    const [name, first] = Object.entries(fns)[0] as [string, Record<string, unknown>]
    expect(validate(file, { ...demo, htpp: {} })).toEqual(['/htpp'])
    expect(validate(file, { ...demo, functions: { ...fns, [name]: { ...first, batch: { maxSize: 'ten' } } } })).toEqual([`/functions/${name}/batch/maxSize`])
    expect(validate(file, { ...demo, functions: { ...fns, '9lives': first } })).toEqual(['/functions/9lives'])
    expect(validate(file, { ...demo, functions: { ...fns, [name]: { ...first, trigger: {} } } })).toEqual([`/functions/${name}/trigger`])
  })
})
