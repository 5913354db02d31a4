/**
 * JSON helpers for hostile data on the event path. None of them throws: V8's JSON.stringify
 * recurses and dies with a RangeError on data nested a few thousand levels deep (issue 9), so
 * everything here that may see such data works with an explicit stack.
 */

/** Whether plain data nests arrays and objects deeper than `limit` (a walk with an explicit stack). */
export function depthExceeds(value: unknown, limit: number): boolean {
  if (value === null || typeof value !== 'object') return false
  const stack: Array<[unknown, number]> = [[value, 1]]
  const seen = new Set<object>()
  try {
    while (stack.length > 0) {
      const [v, d] = stack.pop() as [unknown, number]
      if (d > limit) return true
      if (seen.has(v as object)) continue
      seen.add(v as object)
      const children = Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)
      for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, d + 1])
    }
  } catch {
    return true
  }
  return false
}

export type Serialized = { ok: true; text: string; truncated: boolean } | { ok: false; reason: string }

type Resolved = { kind: 'skip' } | { kind: 'text'; text: string } | { kind: 'container'; value: object }

interface Frame {
  value: object
  /** Own keys of an object; null for an array. */
  keys: string[] | null
  i: number
  members: number
}

/**
 * JSON text of `value` as JSON.stringify would write it (plain data, toJSON honoured), however
 * deep, built without recursion. Stops once the text passes `maxChars` and returns its start
 * (`truncated`). Fails (never throws) on cycles, BigInt and values whose getters throw.
 */
export function serialize(value: unknown, maxChars = Number.POSITIVE_INFINITY): Serialized {
  // String concatenation builds a rope in V8: cheaper than an array of small parts and a join.
  let out = ''
  const emit = (s: string) => {
    out += s
  }
  const ancestors = new Set<object>()
  const stack: Frame[] = []
  const resolve = (v: unknown, key: string): Resolved => {
    if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON(k: string): unknown }).toJSON(key)
    }
    switch (typeof v) {
      case 'string':
        return { kind: 'text', text: JSON.stringify(v) }
      case 'number':
        return { kind: 'text', text: Number.isFinite(v) ? String(v) : 'null' }
      case 'boolean':
        return { kind: 'text', text: v ? 'true' : 'false' }
      case 'bigint':
        throw new TypeError('a BigInt is not JSON data')
      case 'object':
        if (v === null) return { kind: 'text', text: 'null' }
        if (v instanceof Number || v instanceof String || v instanceof Boolean) return { kind: 'text', text: JSON.stringify(v.valueOf()) }
        return { kind: 'container', value: v }
      default:
        return { kind: 'skip' }
    }
  }
  const open = (v: object) => {
    if (ancestors.has(v)) throw new TypeError('the value is cyclic')
    ancestors.add(v)
    const isArray = Array.isArray(v)
    emit(isArray ? '[' : '{')
    stack.push({ value: v, keys: isArray ? null : Object.keys(v), i: 0, members: 0 })
  }
  const put = (r: Resolved) => {
    if (r.kind === 'container') open(r.value)
    else emit(r.kind === 'text' ? r.text : 'null')
  }
  try {
    put(resolve(value, ''))
    while (stack.length > 0) {
      if (out.length > maxChars) return { ok: true, text: out.slice(0, maxChars), truncated: true }
      const f = stack[stack.length - 1] as Frame
      if (f.keys === null) {
        const arr = f.value as unknown[]
        if (f.i >= arr.length) {
          emit(']')
          ancestors.delete(f.value)
          stack.pop()
          continue
        }
        if (f.i > 0) emit(',')
        const r = resolve(arr[f.i], String(f.i))
        f.i++
        put(r)
        continue
      }
      let r: Resolved = { kind: 'skip' }
      while (f.i < f.keys.length && r.kind === 'skip') {
        const k = f.keys[f.i++] as string
        r = resolve((f.value as Record<string, unknown>)[k], k)
        if (r.kind !== 'skip') emit(`${f.members++ ? ',' : ''}${JSON.stringify(k)}:`)
      }
      if (r.kind === 'skip') {
        emit('}')
        ancestors.delete(f.value)
        stack.pop()
      } else put(r)
    }
  } catch (e) {
    return { ok: false, reason: reasonOf(e) }
  }
  return out.length > maxChars ? { ok: true, text: out.slice(0, maxChars), truncated: true } : { ok: true, text: out, truncated: false }
}

/** The start of a value's JSON (at most `maxChars`, "..." when cut), or a note why there is none. */
export function preview(value: unknown, maxChars: number): string {
  const s = serialize(value ?? null, maxChars)
  if (!s.ok) return `[not JSON data: ${s.reason}]`
  return s.truncated ? `${s.text}...` : s.text
}

/** A message for anything thrown, without calling into it more than once. */
export function reasonOf(e: unknown): string {
  try {
    if (e instanceof Error) return e.message
    return String(e)
  } catch {
    return 'an unprintable error'
  }
}

/** True for V8's stack overflow (JSON.stringify of data nested too deep). */
export function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack/i.test(e.message)
}

/** `v` as text for a field that must be a string: never throws. */
export function asText(v: unknown, maxChars = 1024): string {
  if (typeof v === 'string') return v.length > maxChars ? v.slice(0, maxChars) : v
  if (v === undefined || v === null) return ''
  try {
    const s = typeof v === 'object' ? preview(v, maxChars) : String(v)
    return s.length > maxChars ? s.slice(0, maxChars) : s
  } catch {
    return ''
  }
}
