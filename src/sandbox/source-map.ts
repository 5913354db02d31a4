/**
 * Source maps of function bundles: compileFunction appends its map to the script as an inline
 * `//# sourceMappingURL=data:...` comment (so it travels with `CompiledFunction.code` wherever
 * that goes); SandboxPool.registerCode takes it off before the code goes to a worker host and
 * keeps it to map the stack of a failed invocation back to the author's file and line.
 *
 * Nothing here runs on the hot path: a map is parsed the first time an error of its bundle is
 * reported, and only failed invocations are mapped.
 */
import { SourceMap } from 'node:module'
import type { ErrorContext, ErrorInfo } from '../errors.js'

const MARK = '\n//# sourceMappingURL=data:application/json;base64,'

/** Appends `map` (source map JSON) to `code` as an inline source map comment. */
export function attachSourceMap(code: string, map: string): string {
  return `${code}${MARK}${Buffer.from(map).toString('base64')}\n`
}

/** Splits off an inline source map appended by `attachSourceMap`. */
export function detachSourceMap(code: string): { code: string; map?: string } {
  const at = code.lastIndexOf(MARK)
  if (at < 0) return { code }
  return { code: code.slice(0, at), map: Buffer.from(code.slice(at + MARK.length).trim(), 'base64').toString('utf8') }
}

/** Stack frames the isolate reports for user code: `function:<name>:<line>:<column>` (1-based). */
const FRAME = /function:([A-Za-z0-9_-]+):(\d+):(\d+)/g
/** Frames of the sandbox's own bootstrap script: noise to the function's author. */
const BOOTSTRAP_FRAME = /^\s*at .*sluice:bootstrap:\d+:\d+\)?\s*$/

/** Source maps by bundle hash, parsed on first use. */
export class StackMapper {
  private readonly raw = new Map<string, string>()
  private readonly parsed = new Map<string, SourceMap | null>()

  /** Forgets the map of a bundle no instance runs any more. */
  delete(hash: string): void {
    this.raw.delete(hash)
    this.parsed.delete(hash)
  }

  add(hash: string, map: string): void {
    this.raw.set(hash, map)
  }

  private get(hash: string): SourceMap | undefined {
    let m = this.parsed.get(hash)
    if (m === undefined) {
      const raw = this.raw.get(hash)
      if (raw === undefined) return undefined
      try {
        m = new SourceMap(JSON.parse(raw) as ConstructorParameters<typeof SourceMap>[0])
      } catch {
        m = null
      }
      this.parsed.set(hash, m)
    }
    return m ?? undefined
  }

  /** `function:<name>:<line>:<col>` -> `<source>:<line>:<col>` (source relative to the project root), or undefined. */
  private position(map: SourceMap, line: number, column: number): string | undefined {
    const e = map.findEntry(line - 1, column - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number }
    if (e.originalSource === undefined || e.originalLine === undefined || e.originalColumn === undefined) return undefined
    return `${e.originalSource}:${e.originalLine + 1}:${e.originalColumn + 1}`
  }

  /**
   * Rewrites the stack of a function error (in `error.context.stack`) to the author's files and
   * lines, drops the sandbox's own frames, and puts the first mapped position in
   * `context.location` (and, for SLUICE_ERR_FUNCTION_THREW, at the end of the message).
   * Leaves the error as it is when the bundle has no map. Never throws.
   */
  mapError(error: ErrorInfo, hash: string | undefined): ErrorInfo {
    const stack = error.context?.stack
    if (typeof stack !== 'string' || hash === undefined) return error
    const map = this.get(hash)
    if (!map) return error
    try {
      let location: string | undefined
      const lines: string[] = []
      for (const line of stack.split('\n')) {
        if (BOOTSTRAP_FRAME.test(line)) continue
        lines.push(
          line.replace(FRAME, (whole, _fn: string, l: string, c: string) => {
            const at = this.position(map, Number(l), Number(c))
            if (at !== undefined) location ??= at
            return at ?? whole
          }),
        )
      }
      const context: ErrorContext = { ...error.context, stack: lines.join('\n') }
      if (location === undefined) return { ...error, context }
      context.location = location
      const message = error.code === 'SLUICE_ERR_FUNCTION_THREW' ? `${error.message} (at ${location})` : error.message
      return { ...error, message, context }
    } catch {
      return error
    }
  }
}
