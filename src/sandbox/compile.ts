import { createHash } from 'node:crypto'
import { relative } from 'node:path'
import { build, transform, type Message } from 'esbuild'
import { SluiceError } from '../errors.js'

/** A function module compiled to a classic script that defines `__sluice_fn` (the module namespace). */
export interface CompiledFunction {
  /** Absolute path of the source module. */
  file: string
  /** Script source for the isolate. */
  code: string
  /** Content hash: instances and code caches are keyed by it. */
  hash: string
}

export const MODULE_GLOBAL = '__sluice_fn'

function formatMessage(m: Message, root: string): string {
  const loc = m.location
  if (!loc) return m.text
  const file = relative(root, loc.file) || loc.file
  return `${file}:${loc.line}:${loc.column + 1} ${m.text}${loc.lineText ? `\n    ${loc.lineText}` : ''}`
}

function isBuildFailure(e: unknown): e is { errors: Message[] } {
  return typeof e === 'object' && e !== null && Array.isArray((e as { errors?: unknown }).errors)
}

/**
 * Bundles a TypeScript or JavaScript function module (and what it imports) with esbuild into a
 * script for an isolate. Node built-ins cannot be resolved on the neutral platform, so a function
 * that imports `fs` fails here, not at run time.
 *
 * Throws SLUICE_ERR_FUNCTION_COMPILE (with file:line:col) or SLUICE_ERR_FUNCTION_EXPORT.
 */
export async function compileFunction(file: string, opts: { root: string; functionName: string }): Promise<CompiledFunction> {
  const context = { function: opts.functionName, path: relative(opts.root, file) || file }
  let esm: string
  let exports: string[]
  try {
    const result = await build({
      entryPoints: [file],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2022',
      metafile: true,
      logLevel: 'silent',
      charset: 'utf8',
      legalComments: 'none',
      outfile: 'out.js',
    })
    const out = result.outputFiles[0]
    const meta = Object.values(result.metafile.outputs)[0]
    if (!out || !meta) throw new Error('esbuild produced no output')
    esm = out.text
    exports = meta.exports
  } catch (e) {
    const detail = isBuildFailure(e) ? e.errors.map((m) => formatMessage(m, opts.root)).join('\n') : String(e)
    throw new SluiceError('SLUICE_ERR_FUNCTION_COMPILE', `function ${opts.functionName} does not compile:\n${detail}`, { cause: e, context })
  }
  if (!exports.includes('default')) {
    throw new SluiceError(
      'SLUICE_ERR_FUNCTION_EXPORT',
      `function ${opts.functionName}: ${context.path} has no default export (found: ${exports.join(', ') || 'none'}); add \`export default async function (events, ctx) { ... }\``,
      { context },
    )
  }
  const iife = await transform(esm, { format: 'iife', globalName: MODULE_GLOBAL, target: 'es2022', logLevel: 'silent' })
  const code = iife.code
  return { file, code, hash: createHash('sha256').update(code).digest('hex').slice(0, 16) }
}
