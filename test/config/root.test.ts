/**
 * The project root: relative `code` and `store.path` mean the same whatever the current directory.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { findProjectRoot, issuesOf, loadConfig } from '../../src/config/load.js'
import { projectDir } from '../helpers/gateway.js'

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function folder(files: Record<string, string>): string {
  const p = projectDir(files)
  cleanups.push(p.cleanup)
  return p.dir
}

const FN = 'export default async () => 1\n'
const YAML = `store: { path: .sluice/state.db }
functions:
  ok:
    code: functions/ok.ts
    trigger: { timer: { schedule: "0 * * * * *" } }
`

describe('project root', () => {
  it('is the nearest folder at or above the config file with a package.json', async () => {
    const dir = folder({ 'package.json': '{}', 'config/gateway.yaml': YAML, 'functions/ok.ts': FN })
    expect(findProjectRoot(join(dir, 'config'))).toBe(dir)
    // Loaded from another current directory (the test runner's), by absolute path: same result.
    const { config } = await loadConfig(join(dir, 'config/gateway.yaml'), { connectors: CONNECTORS, env: {} })
    expect(config.root).toBe(dir)
    expect(config.functions.ok?.codePath).toBe(join(dir, 'functions/ok.ts'))
  })

  it('is the config file folder when no package.json is at or above it', async () => {
    const dir = folder({ 'gateway.yaml': YAML, 'functions/ok.ts': FN })
    expect(findProjectRoot(dir)).toBe(dir)
    const { config } = await loadConfig(join(dir, 'gateway.yaml'), { connectors: CONNECTORS, env: {} })
    expect(config.root).toBe(dir)
    expect(config.functions.ok?.codePath).toBe(join(dir, 'functions/ok.ts'))
  })

  it('shows paths in messages relative to the root, never climbing out of the current directory', async () => {
    const dir = folder({ 'package.json': '{}', 'config/gateway.yaml': `http: { port: nope }\n${YAML}` })
    const err = await loadConfig(join(dir, 'config/gateway.yaml'), { connectors: CONNECTORS, env: {} }).catch((e: unknown) => e)
    const list = issuesOf(err)
    expect(list.map((i) => [i.file, i.code, i.path])).toEqual([
      ['config/gateway.yaml', 'SLUICE_ERR_CONFIG_TYPE', 'http.port'],
      ['config/gateway.yaml', 'SLUICE_ERR_FUNCTION_NOT_FOUND', 'functions.ok.code'],
    ])
    expect((err as Error).message).not.toContain('..')
    expect(list[1]?.message).toBe(`function code file not found: functions/ok.ts (relative paths start at the project root ${dir})`)
  })
})
