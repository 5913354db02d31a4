import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node, type Pair, type Scalar } from 'yaml'
import type { ErrorCode } from '../errors.js'

export type Path = Array<string | number>

export interface Positioned {
  code: ErrorCode
  message: string
  path: string
  file: string
  line: number
  col: number
}

/** Most alias expansions a document may use: real configs use a handful; a bomb uses millions. */
const MAX_ALIAS_COUNT = 200

/*
 * `${` and `}` may not appear unquoted in a YAML flow collection, yet the documented form is
 * `admin: { key: ${SLUICE_ADMIN_KEY} }`. Before parsing, each reference is masked with
 * private-use characters of the same length (so offsets, lines and columns stay right), which YAML
 * reads as part of a plain scalar; substitution then works on the masked form.
 */
const OPEN = '\uE000\uE001'
const CLOSE = '\uE002'
const RAW_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g
const ENV_REF = /\$\$\{|\uE000\uE001([A-Za-z_][A-Za-z0-9_]*)(?::-([^\uE002]*))?\uE002/g
const WHOLE_REF = /^\uE000\uE001([A-Za-z_][A-Za-z0-9_]*)(?::-([^\uE002]*))?\uE002$/

function mask(text: string): string {
  return text.replace(RAW_REF, (m, name: string | undefined, def: string | undefined) => (m === '$${' ? m : `${OPEN}${name}${def ?? ''}${CLOSE}`))
}

function hasRef(v: unknown): v is string {
  return typeof v === 'string' && (v.includes(OPEN) || v.includes('$${'))
}

function unmask(text: string): string {
  return text.replaceAll(OPEN, '${').replaceAll(CLOSE, '}')
}

/**
 * A parsed YAML configuration that remembers where every node came from, so validation errors can
 * name file:line:col. Also performs ${VAR} substitution on scalars:
 * - `${VAR}` is replaced from the environment; `${VAR:-default}` falls back to `default`;
 *   `$${` stands for a literal `${`.
 * - the result is always a string: a value is never re-read as YAML, so `#`, `&` or `: ` in a
 *   secret stay as they are. Where the schema wants a number or a boolean, the loader converts
 *   the string of an unquoted scalar (see `fromEnv`), so `port: ${PORT}` still works;
 * - a key whose whole value is an unset reference is dropped (optional keys fall back to their
 *   default; required ones report SLUICE_ERR_CONFIG_ENV at the reference). An unset reference
 *   inside a longer string is an error.
 */
export class YamlSource {
  readonly issues: Positioned[] = []
  readonly notes: string[] = []
  readonly value: unknown
  private readonly doc: Document
  private readonly lines = new LineCounter()
  private readonly unset = new Map<string, { name: string; line: number; col: number }>()
  /** Unquoted scalars whose value came from ${VAR}s, with the variable names. */
  private readonly substituted: Array<{ path: Path; names: string[] }> = []

  constructor(
    text: string,
    readonly file: string,
    env: Record<string, string | undefined>,
  ) {
    this.doc = parseDocument(mask(text), { lineCounter: this.lines, uniqueKeys: true, prettyErrors: false, merge: false })
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      const isError = this.doc.errors.includes(e as never)
      if (!isError) continue
      const pos = this.lines.linePos(e.pos[0])
      if (e.code === 'DUPLICATE_KEY') {
        this.issues.push({ code: 'SLUICE_ERR_CONFIG_DUPLICATE_KEY', file, line: pos.line, col: pos.col, ...this.duplicate(e.pos[0]) })
        continue
      }
      this.issues.push({ code: 'SLUICE_ERR_CONFIG_YAML', message: unmask(e.message.split('\n')[0] ?? e.message), path: '', file, line: pos.line, col: pos.col })
    }
    if (this.issues.length > 0) {
      this.value = undefined
      return
    }
    this.substitute(env)
    let value: unknown
    try {
      value = this.doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT })
    } catch (e) {
      this.issues.push({
        code: 'SLUICE_ERR_CONFIG_ALIAS_LIMIT',
        message: `YAML aliases expand too much (${(e as Error).message}); the limit is ${MAX_ALIAS_COUNT} expansions`,
        path: '',
        file,
        line: 1,
        col: 1,
      })
    }
    this.value = value
  }

  /** The message and key path of the duplicate key whose second occurrence starts at `offset`. */
  private duplicate(offset: number): { message: string; path: string } {
    let found: { message: string; path: string } | undefined
    visit(this.doc, {
      Map: (_key, map, ancestors) => {
        const i = map.items.findIndex((p) => (p.key as Node | null)?.range?.[0] === offset)
        const pair = map.items[i]
        if (!pair) return undefined
        const name = isScalar(pair.key) ? unmask(String(pair.key.value)) : unmask(String(pair.key))
        const first = map.items.slice(0, i).find((p) => (isScalar(p.key) ? unmask(String(p.key.value)) : unmask(String(p.key))) === name)
        const firstPos = first && (first.key as Node | null)?.range ? this.lines.linePos((first.key as Node).range![0]) : undefined
        const parent = this.pathOf(ancestors, undefined).map((p) => (typeof p === 'string' ? unmask(p) : p))
        found = {
          message: `key ${JSON.stringify(name)} appears twice in this mapping${firstPos ? ` (first at line ${firstPos.line}:${firstPos.col})` : ''}; keep one of them`,
          path: this.pathString([...parent, name]),
        }
        return visit.BREAK
      },
    })
    return found ?? { message: 'a key appears twice in this mapping; keep one of them', path: '' }
  }

  /** The key path of a node, from the ancestors `visit` passes (plus the node itself, if a pair or scalar). */
  private pathOf(ancestors: readonly unknown[], last: Pair | Scalar | undefined): Path {
    const path: Path = []
    const chain = last === undefined ? [...ancestors] : [...ancestors, last]
    for (let i = 0; i < chain.length; i++) {
      const n = chain[i]
      if (isPair(n) && isScalar(n.key)) path.push(String(n.key.value))
      else if (isSeq(n)) {
        const child = chain[i + 1]
        if (child !== undefined) path.push(n.items.indexOf(child as never))
      }
    }
    return path
  }

  private substitute(env: Record<string, string | undefined>): void {
    const pathOf = (ancestors: readonly unknown[], last: Pair | Scalar): Path => this.pathOf(ancestors, last)
    visit(this.doc, {
      Pair: (_key, pair, ancestors) => {
        // Keys are not substituted; show them as written.
        if (isScalar(pair.key) && typeof pair.key.value === 'string') pair.key.value = unmask(pair.key.value)
        const v = pair.value
        if (!isScalar(v) || !hasRef(v.value)) return undefined
        const path = pathOf(ancestors, pair)
        const whole = WHOLE_REF.exec(v.value)
        if (whole && env[whole[1] as string] === undefined && whole[2] === undefined) {
          const pos = this.lines.linePos(v.range?.[0] ?? 0)
          this.unset.set(path.join('\u0000'), { name: whole[1] as string, line: pos.line, col: pos.col })
          this.notes.push(`${this.pathString(path)}: \${${whole[1]}} is not set; the key is left out`)
          return visit.REMOVE
        }
        this.replaceScalar(v, env, path)
        return undefined
      },
      Scalar: (_key, node, ancestors) => {
        const parent = ancestors[ancestors.length - 1]
        if (!isSeq(parent) || !hasRef(node.value)) return
        this.replaceScalar(node, env, pathOf(ancestors, node))
      },
    })
  }

  private replaceScalar(node: Scalar, env: Record<string, string | undefined>, path: Path): void {
    const text = node.value as string
    let missing: string | undefined
    const out = text.replace(ENV_REF, (m, name: string | undefined, def: string | undefined) => {
      if (m === '$${') return '${'
      const v = env[name as string]
      if (v !== undefined) return v
      if (def !== undefined) return def
      missing ??= name
      return ''
    })
    if (missing !== undefined) {
      const pos = this.lines.linePos(node.range?.[0] ?? 0)
      this.issues.push({
        code: 'SLUICE_ERR_CONFIG_ENV',
        message: `\${${missing}} is not set (set it, or write \${${missing}:-default})`,
        path: this.pathString(path),
        file: this.file,
        line: pos.line,
        col: pos.col,
      })
    }
    // Quoted scalars are strings by the author's choice; unquoted ones may be converted later.
    if (node.type === 'PLAIN') {
      const names = [...text.matchAll(ENV_REF)].flatMap((m) => (m[1] === undefined ? [] : [m[1]]))
      if (names.length > 0) this.substituted.push({ path, names })
    }
    node.value = out
  }

  /** The variable whose unset value removed the key at `path`, if any. */
  unsetEnv(path: Path): string | undefined {
    return this.unset.get(path.join('\u0000'))?.name
  }

  /** Where the unset variable that removed the key at `path` is written, if any. */
  unsetAt(path: Path): { file: string; line: number; col: number; path: string } | undefined {
    const u = this.unset.get(path.join('\u0000'))
    return u && { file: this.file, line: u.line, col: u.col, path: this.pathString(path) }
  }

  /**
   * The unquoted scalars substituted from ${VAR}s (paths and variable names): the loader converts
   * such a string to a number or boolean where the schema accepts one.
   */
  fromEnv(): ReadonlyArray<{ path: Path; names: string[] }> {
    return this.substituted
  }

  pathString(path: Path): string {
    let s = ''
    for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`
    return s
  }

  /**
   * Position of the node at `path`, or of the nearest ancestor that exists. With `key`, the
   * position of the mapping key itself (for "unknown key" errors).
   */
  locate(path: Path, key = false): { file: string; line: number; col: number; path: string } {
    let node: Node | null | undefined = this.doc.contents as Node | null
    let best = node?.range?.[0] ?? 0
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg))
        if (!pair) break
        const last = i === path.length - 1
        const target = (last && key ? pair.key : (pair.value ?? pair.key)) as Node | null
        if (target?.range) best = target.range[0]
        node = target
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as Node | undefined
        if (!item) break
        if (item.range) best = item.range[0]
        node = item
      } else break
    }
    const pos = this.lines.linePos(best)
    return { file: this.file, line: pos.line, col: pos.col, path: this.pathString(path) }
  }
}
