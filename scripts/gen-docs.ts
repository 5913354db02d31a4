/**
 * Writes the generated reference files (schema/sluice.schema.json, docs/errors.md,
 * docs/configuration.md) from the schema and the error registry. Run: `npm run docs`.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generatedFiles } from '../src/config/docs.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
for (const [rel, text] of Object.entries(generatedFiles())) {
  const file = join(root, rel)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, text)
  process.stdout.write(`wrote ${rel}\n`)
}
