import { createHash } from 'node:crypto'
import { builtinModules } from 'node:module'
import { relative, resolve } from 'node:path'
import { build, transform, type Message } from 'esbuild'
import { SluiceError } from '../errors.js'
import { attachSourceMap } from './source-map.js'

/** A function module compiled to a classic script that defines `__sluice_fn` (the module namespace). */
export interface CompiledFunction {
  /** Absolute path of the source module. */
  file: string
  /**
   * Script source for the isolate, ending with its source map as an inline comment (see
   * source-map.ts: SandboxPool.registerCode takes it off and maps error stacks with it).
   */
  code: string
  /** Content hash: instances and code caches are keyed by it. */
  hash: string
  /** Absolute paths of every source file the bundle was built from (esbuild's metafile inputs): what `--watch` watches. */
  inputs: string[]
}

export const MODULE_GLOBAL = '__sluice_fn'

function formatMessage(m: Message, root: string): string {
  const loc = m.location
  if (!loc) return m.text
  // esbuild reports paths relative to its working directory, the project root.
  const file = relative(root, resolve(root, loc.file)) || loc.file
  return `${file}:${loc.line}:${loc.column + 1} ${m.text}${loc.lineText ? `\n    ${loc.lineText}` : ''}`
}

function isBuildFailure(e: unknown): e is { errors: Message[] } {
  return typeof e === 'object' && e !== null && Array.isArray((e as { errors?: unknown }).errors)
}

const BUILTINS = new Set(builtinModules)

/**
 * The Node.js built-in a failed import names (`node:fs`, `fs`, `fs/promises`), if that is why it
 * failed. A bare name only fails to resolve when no npm package of that name (a browser polyfill
 * such as `events` or `buffer`) is installed, so those keep working.
 */
function builtinOf(m: Message): string | undefined {
  const name = /^Could not resolve "([^"]+)"/.exec(m.text)?.[1]
  if (name === undefined) return undefined
  if (name.startsWith('node:')) return name
  return BUILTINS.has(name) || BUILTINS.has(name.split('/')[0] ?? '') ? name : undefined
}

const BUILTIN_HINT =
  'Functions run in a sandbox without file system, network or process, so Node.js built-in modules are not available. ' +
  'Take input from the events the function receives; send data on through outputs (ctx.output(name, value), with the output declared under outputs: in the configuration); log with ctx.log.'

/**
 * Bundles a TypeScript or JavaScript function module (and what it imports) with esbuild into a
 * script for an isolate, with a source map. Node built-ins cannot be resolved on the neutral
 * platform, so a function that imports `fs` fails here, not at run time.
 *
 * Throws SLUICE_ERR_FUNCTION_COMPILE (with file:line:col), SLUICE_ERR_FUNCTION_NODE_BUILTIN (an
 * import of a Node.js built-in, with file:line:col and what to use instead) or
 * SLUICE_ERR_FUNCTION_EXPORT.
 */
export async function compileFunction(file: string, opts: { root: string; functionName: string }): Promise<CompiledFunction> {
  const context = { function: opts.functionName, path: relative(opts.root, file) || file }
  let esm: string
  let exports: string[]
  let inputs: string[]
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
      // Sources in the map are relative to the output's folder: the project root.
      absWorkingDir: resolve(opts.root),
      outfile: 'out.js',
      sourcemap: 'inline',
      sourcesContent: false,
    })
    const out = result.outputFiles[0]
    const meta = Object.values(result.metafile.outputs)[0]
    if (!out || !meta) throw new Error('esbuild produced no output')
    esm = out.text
    exports = meta.exports
    // Input paths are relative to absWorkingDir; plugins' virtual namespaces ("ns:path") are not files.
    inputs = Object.keys(result.metafile.inputs)
      .filter((p) => !/^[a-z-]+:/.test(p))
      .map((p) => resolve(opts.root, p))
  } catch (e) {
    const errors = isBuildFailure(e) ? e.errors : []
    const builtins = errors.filter((m) => builtinOf(m) !== undefined)
    if (builtins.length > 0) {
      const names = [...new Set(builtins.map(builtinOf))].map((n) => `"${n}"`).join(', ')
      const detail = builtins.map((m) => formatMessage({ ...m, text: `imports the Node.js built-in ${JSON.stringify(builtinOf(m))}` }, opts.root)).join('\n')
      throw new SluiceError('SLUICE_ERR_FUNCTION_NODE_BUILTIN', `function ${opts.functionName} imports ${names}:\n${detail}\n${BUILTIN_HINT}`, {
        cause: e,
        context,
      })
    }
    const detail = errors.length > 0 ? errors.map((m) => formatMessage(m, opts.root)).join('\n') : String(e)
    throw new SluiceError('SLUICE_ERR_FUNCTION_COMPILE', `function ${opts.functionName} does not compile:\n${detail}`, { cause: e, context })
  }
  if (!exports.includes('default')) {
    throw new SluiceError(
      'SLUICE_ERR_FUNCTION_EXPORT',
      `function ${opts.functionName}: ${context.path} has no default export (found: ${exports.join(', ') || 'none'}); add \`export default async function (events, ctx) { ... }\``,
      { context },
    )
  }
  // esbuild chains the bundle's inline map through this step: the result maps to the sources.
  const iife = await transform(esm, {
    format: 'iife',
    globalName: MODULE_GLOBAL,
    target: 'es2022',
    logLevel: 'silent',
    sourcemap: 'external',
    sourcesContent: false,
  })
  const code = attachSourceMap(iife.code, iife.map)
  return { file, code, hash: createHash('sha256').update(code).digest('hex').slice(0, 16), inputs }
}
