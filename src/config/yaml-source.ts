import { isMap, isPair, isScalar, isSeq, LineCounter, parse as parseYaml, parseDocument, visit, type Document, type Node, type Pair, type Scalar } from 'yaml'
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
 * - a plain scalar that is exactly one reference is re-read as YAML, so `port: ${PORT}` is a number;
 * - a key whose whole value is an unset reference is dropped (optional keys fall back to their
 *   default; required ones report SLUICE_ERR_CONFIG_ENV). An unset reference inside a longer
 *   string is an error.
 */
export class YamlSource {
  readonly issues: Positioned[] = []
  readonly notes: string[] = []
  readonly value: unknown
  private readonly doc: Document
  private readonly lines = new LineCounter()
  private readonly unset = new Map<string, string>()

  constructor(
    text: string,
    readonly file: string,
    env: Record<string, string | undefined>,
  ) {
    this.doc = parseDocument(mask(text), { lineCounter: this.lines, uniqueKeys: true, prettyErrors: false, merge: false })
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      const isError = this.doc.errors.includes(e as never)
      if (!isError) continue
      const code: ErrorCode = e.code === 'DUPLICATE_KEY' ? 'SLUICE_ERR_CONFIG_DUPLICATE_KEY' : 'SLUICE_ERR_CONFIG_YAML'
      const pos = this.lines.linePos(e.pos[0])
      this.issues.push({ code, message: unmask(e.message.split('\n')[0] ?? e.message), path: '', file, line: pos.line, col: pos.col })
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

  private substitute(env: Record<string, string | undefined>): void {
    const pathOf = (ancestors: readonly unknown[], last: Pair | Scalar): Path => {
      const path: Path = []
      const chain = [...ancestors, last]
      for (let i = 0; i < chain.length; i++) {
        const n = chain[i]
        if (isPair(n) && isScalar(n.key)) path.push(String(n.key.value))
        else if (isSeq(n)) {
          const child = chain[i + 1]
          path.push(n.items.indexOf(child as never))
        }
      }
      return path
    }
    visit(this.doc, {
      Pair: (_key, pair, ancestors) => {
        // Keys are not substituted; show them as written.
        if (isScalar(pair.key) && typeof pair.key.value === 'string') pair.key.value = unmask(pair.key.value)
        const v = pair.value
        if (!isScalar(v) || !hasRef(v.value)) return undefined
        const path = pathOf(ancestors, pair)
        const whole = WHOLE_REF.exec(v.value)
        if (whole && env[whole[1] as string] === undefined && whole[2] === undefined) {
          this.unset.set(path.join('\u0000'), whole[1] as string)
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
    const whole = WHOLE_REF.test(text)
    if (whole && node.type === 'PLAIN') {
      try {
        const parsed: unknown = parseYaml(out)
        node.value = parsed !== null && typeof parsed === 'object' ? out : parsed
        return
      } catch {
        // not a YAML scalar: keep the string
      }
    }
    node.value = out
  }

  /** The variable whose unset value removed the key at `path`, if any. */
  unsetEnv(path: Path): string | undefined {
    return this.unset.get(path.join('\u0000'))
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
