/**
 * The files `sluice init` and `sluice new` write come from templates/ in the sluice package. They
 * are found from this module's own location (src/cli or dist/src/cli), never from the current
 * folder, so the CLI finds them wherever it is run and however it is installed.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The trigger kinds `sluice new` writes a function for; each has templates/functions/<kind>.ts. */
export const TRIGGER_KINDS = ['http', 'mqtt', 'amqp', 'kafka', 'eventhubs', 'timer'] as const
export type TriggerKind = (typeof TRIGGER_KINDS)[number]

interface PackageInfo {
  root: string
  version: string
  typescript: string
  node: string
}

let cached: PackageInfo | undefined

/** The sluice package this CLI belongs to: the nearest package.json named sluice above this file. */
export function sluicePackage(): PackageInfo {
  if (cached) return cached
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as {
        name?: string
        version?: string
        devDependencies?: Record<string, string>
        engines?: { node?: string }
      }
      if (pkg.name === 'sluice' && pkg.version) {
        cached = { root: dir, version: pkg.version, typescript: pkg.devDependencies?.typescript ?? '*', node: pkg.engines?.node ?? '>=20.19' }
        return cached
      }
    }
    const up = dirname(dir)
    if (up === dir) throw new Error(`the sluice package.json was not found above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}

/** A template's text with `{{key}}` replaced by `vars[key]`. `rel` is below templates/. */
export function readTemplate(rel: string, vars: Record<string, string>): string {
  const text = readFileSync(join(sluicePackage().root, 'templates', rel), 'utf8')
  return text.replace(/\{\{(\w+)\}\}/g, (m, key: string) => vars[key] ?? m)
}

/** The function module of a trigger kind, for a function called `name`. */
export function functionTemplate(kind: TriggerKind, name: string): string {
  return readTemplate(`functions/${kind}.ts`, { name })
}
