/**
 * `sluice init [dir]`: a new project that runs at once (`npm install && npm start`): an HTTP, an
 * MQTT (on the built-in broker) and a timer function, typed with sluice/function.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { SluiceError } from '../errors.js'
import { functionTemplate, readTemplate, sluicePackage } from './templates.js'

/** A name npm accepts, made from the folder's name. */
function packageName(dir: string): string {
  const name = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+|[-]+$/g, '')
  return name || 'sluice-project'
}

/** Every file of a new project: path relative to the project folder -> content. */
export function projectFiles(dir: string): Map<string, string> {
  const pkg = sluicePackage()
  const name = packageName(dir)
  const packageJson = {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    scripts: {
      start: 'sluice start',
      validate: 'sluice validate',
      typecheck: 'tsc -p tsconfig.json',
    },
    engines: { node: pkg.node },
    dependencies: { sluice: `^${pkg.version}` },
    devDependencies: { typescript: pkg.typescript },
  }
  return new Map([
    ['package.json', `${JSON.stringify(packageJson, null, 2)}\n`],
    ['tsconfig.json', readTemplate('project/tsconfig.json', { name })],
    ['config/gateway.yaml', readTemplate('project/config/gateway.yaml', { name })],
    ['functions/hello.ts', functionTemplate('http', 'hello')],
    ['functions/readings.ts', functionTemplate('mqtt', 'readings')],
    ['functions/heartbeat.ts', functionTemplate('timer', 'heartbeat')],
    ['README.md', readTemplate('project/README.md', { name })],
    // Stored without the dot: npm leaves .gitignore files out of published packages.
    ['.gitignore', readTemplate('project/gitignore', { name })],
  ])
}

/**
 * Writes a new project into `target` (created when missing). Refuses, writing nothing, when any
 * of its files exists (SLUICE_ERR_CLI_INIT_EXISTS). Returns the paths written.
 */
export function initProject(target: string): string[] {
  const dir = resolve(target)
  const files = projectFiles(dir)
  const existing = [...files.keys()].filter((rel) => existsSync(join(dir, rel)))
  if (existing.length > 0) {
    throw new SluiceError(
      'SLUICE_ERR_CLI_INIT_EXISTS',
      `${dir} has ${existing.length === 1 ? 'a file' : 'files'} that sluice init would overwrite: ${existing.join(', ')}; nothing was written`,
      { context: { path: dir } },
    )
  }
  const written: string[] = []
  for (const [rel, text] of files) {
    const file = join(dir, rel)
    mkdirSync(dirname(file), { recursive: true })
    // wx: never overwrite, even a file that appeared since the check above.
    writeFileSync(file, text, { flag: 'wx' })
    written.push(rel)
  }
  return written
}

/** `sluice init [dir]`: writes the project and prints what it wrote and what to run next. */
export function runInit(target: string | undefined, out: NodeJS.WritableStream = process.stdout): number {
  const dir = resolve(target ?? '.')
  const written = initProject(dir)
  const shown = relative(process.cwd(), dir) || '.'
  const lines = [`Created a sluice project in ${shown}:`, ...written.map((f) => `  ${f}`), '', 'Next:']
  if (shown !== '.') lines.push(`  cd ${shown.includes(' ') ? JSON.stringify(shown) : shown}`)
  lines.push(
    '  npm install',
    '  npm start',
    "  curl 'http://127.0.0.1:7071/api/hello?name=you'   (in a second terminal)",
    '',
    'Add a function: npx sluice new <name> --trigger http|mqtt|amqp|kafka|eventhubs|timer',
    '',
  )
  out.write(lines.join('\n'))
  return 0
}
