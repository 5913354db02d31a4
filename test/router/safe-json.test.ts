/**
 * The non-throwing JSON helpers of the event path (src/router/safe-json.ts) and the payload
 * decoder every stream connector uses (src/sdk/payload.ts).
 */
import { describe, expect, it } from 'vitest'
import { depthExceeds, preview, serialize } from '../../src/router/safe-json.js'
import { decodePayload, decodeText, EVENT_LIMITS, jsonDepth } from '../../src/sdk/payload.js'

const deepArray = (n: number): unknown => {
  let v: unknown = 0
  for (let i = 0; i < n; i++) v = [v]
  return v
}

describe('serialize', () => {
  it.each([
    ['plain data', { a: [1, 'x', null, true, { b: -0.5 }], s: 'quote " and \\ and \n', e: {}, l: [] }],
    ['what JSON drops or nulls', { u: undefined, f: () => 1, arr: [undefined, () => 1, Symbol('s'), Number.NaN, Number.POSITIVE_INFINITY] }],
    ['toJSON and dates', { d: new Date('2026-01-02T03:04:05Z'), t: { toJSON: (k: string) => `key:${k}` } }],
    ['boxed primitives and lone surrogates', { n: Object(5) as unknown, s: Object('x') as unknown, lone: '\ud800' }],
    ['a top-level string', 'text'],
  ])('writes %s exactly as JSON.stringify', (_, v) => {
    expect(serialize(v)).toEqual({ ok: true, text: JSON.stringify(v), truncated: false })
  })

  it('writes data nested 20,000 deep, which JSON.stringify cannot', () => {
    const v = deepArray(20_000)
    expect(() => JSON.stringify(v)).toThrow(RangeError)
    const s = serialize(v)
    expect(s).toEqual({ ok: true, text: `${'['.repeat(20_000)}0${']'.repeat(20_000)}`, truncated: false })
  })

  it('stops at maxChars and says so', () => {
    expect(serialize({ s: 'x'.repeat(100) }, 10)).toEqual({ ok: true, text: '{"s":"xxxx', truncated: true })
    expect(preview(deepArray(10_000), 8)).toBe('[[[[[[[[...')
  })

  it('fails, without throwing, on cycles, BigInt and throwing getters; a shared (non-cyclic) object is fine', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(serialize(cyclic)).toMatchObject({ ok: false, reason: expect.stringMatching(/cyclic/) })
    expect(serialize({ n: 1n })).toMatchObject({ ok: false, reason: expect.stringMatching(/BigInt/) })
    expect(
      serialize({
        get boom() {
          throw new Error('getter')
        },
      }),
    ).toEqual({ ok: false, reason: 'getter' })
    const shared = { x: 1 }
    expect(serialize([shared, shared])).toEqual({ ok: true, text: '[{"x":1},{"x":1}]', truncated: false })
    expect(preview(cyclic, 100)).toMatch(/^\[not JSON data: /)
  })
})

describe('depth', () => {
  it('jsonDepth counts brackets outside strings only', () => {
    expect(jsonDepth('{"a":[1,{"b":"[[[[{{{{"}],"c":"\\"]]"}')).toBe(3)
    expect(jsonDepth('"just a string with [ and {"')).toBe(0)
    expect(jsonDepth(`${'['.repeat(1000)}${']'.repeat(1000)}`, 10)).toBe(11)
  })

  it('depthExceeds walks data without recursion', () => {
    expect(depthExceeds(deepArray(100_000), 512)).toBe(true)
    expect(depthExceeds(deepArray(511), 512)).toBe(false)
    expect(depthExceeds({ a: { b: [deepArray(600)] } }, 512)).toBe(true)
    expect(depthExceeds('text', 0)).toBe(false)
  })
})

describe('decodePayload', () => {
  it('parses JSON, keeps other text, and base64s bytes that are not UTF-8', () => {
    expect(decodePayload(Buffer.from('{"a":1}'))).toEqual({ body: { a: 1 }, base64: false })
    expect(decodePayload(Buffer.from('  [1]'))).toEqual({ body: [1], base64: false })
    expect(decodePayload(Buffer.from('hello'))).toEqual({ body: 'hello', base64: false })
    expect(decodePayload(Buffer.from('{not json'))).toEqual({ body: '{not json', base64: false })
    expect(decodePayload(Buffer.alloc(0))).toEqual({ body: '', base64: false })
    expect(decodePayload(Buffer.from([0xff, 0xfe, 0x00]))).toEqual({ body: '//4A', base64: true })
    expect(decodePayload(Buffer.from('{"a":1}'), { json: false })).toEqual({ body: '{"a":1}', base64: false })
  })

  it('refuses JSON nested deeper than the limit before parsing it, keeping its text (also text that only starts like it)', () => {
    const deep = `${'['.repeat(EVENT_LIMITS.maxDepth + 1)}${']'.repeat(EVENT_LIMITS.maxDepth + 1)}`
    expect(decodeText(deep)).toEqual({
      body: deep,
      base64: false,
      rejected: { code: 'SLUICE_ERR_EVENT_TOO_DEEP', message: expect.stringMatching(/512/), retriable: false },
    })
    const atLimit = `${'['.repeat(EVENT_LIMITS.maxDepth)}${']'.repeat(EVENT_LIMITS.maxDepth)}`
    expect(decodeText(atLimit).rejected).toBeUndefined()
    const notJson = `${'['.repeat(5000)} nope`
    expect(decodeText(notJson)).toMatchObject({ body: notJson, rejected: { code: 'SLUICE_ERR_EVENT_TOO_DEEP' } })
    // Brackets inside a JSON string do not count.
    const inString = JSON.stringify(`${'['.repeat(5000)}`)
    expect(decodeText(inString)).toEqual({ body: '['.repeat(5000), base64: false })
  })

  it('refuses payloads above the event limit unparsed, keeping the first 16 MiB', () => {
    const big = Buffer.alloc(EVENT_LIMITS.maxChars + 1, 0x61)
    const d = decodePayload(big)
    expect(d.rejected?.code).toBe('SLUICE_ERR_EVENT_TOO_LARGE')
    expect(d.body).toBe(big.toString('utf8'))
    expect(d.truncatedFrom).toBeUndefined()
    const huge = Buffer.alloc(EVENT_LIMITS.keptBytes + 10, 0xff)
    const h = decodePayload(huge)
    expect(h).toMatchObject({ base64: true, truncatedFrom: huge.length, rejected: { code: 'SLUICE_ERR_EVENT_TOO_LARGE' } })
    expect(Buffer.from(h.body as string, 'base64').length).toBe(EVENT_LIMITS.keptBytes)
  })
})
