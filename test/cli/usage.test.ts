/**
 * The CLI's help and usage errors, as users run it: `node bin/sluice.js` against the build in
 * dist/ (npm test builds first).
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { projectDir } from '../helpers/gateway.js'

const BIN = resolve('bin/sluice.js')

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function folder(): string {
  const p = projectDir({})
  cleanups.push(p.cleanup)
  return p.dir
}

const run = (args: string[], cwd: string) => spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })

describe('sluice --help', () => {
  it.each(['start', 'validate', 'invoke', 'simulate', 'dead-letters', 'keys'])('sluice %s --help and -h print its own usage and exit 0', (command) => {
    const dir = folder()
    for (const flag of ['--help', '-h']) {
      // Other options on the line do not matter: help wins, nothing runs (there is no config here).
      const r = run([command, '--config', 'missing.yaml', flag], dir)
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
      expect(r.stdout.startsWith(`Usage: sluice ${command}`)).toBe(true)
      expect(r.stdout).toMatch(/--help, -h/)
    }
    expect(run(['help', command], dir).stdout).toBe(run([command, '--help'], dir).stdout)
  })

  it('says what validate checks and what it does not', () => {
    const r = run(['validate', '--help'], folder())
    expect(r.stdout).toMatch(/--typecheck/)
    expect(r.stdout).toMatch(/with --typecheck only: TypeScript types/)
    expect(r.stdout).toMatch(/does not connect to brokers or the store/)
  })

  it('an unknown option is one line naming the command and the code, exit 2', () => {
    const r = run(['start', '--bogus'], folder())
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe('sluice: unknown option --bogus for sluice start (run sluice start --help) [SLUICE_ERR_CLI_USAGE]\n')
  })

  it('other usage errors are one line with the code, exit 2', () => {
    const dir = folder()
    const missing = run(['invoke'], dir)
    expect(missing.status).toBe(2)
    expect(missing.stderr).toBe('sluice: usage: sluice invoke <function> [--data JSON] [SLUICE_ERR_CLI_USAGE]\n')
    const value = run(['validate', '--config'], dir)
    expect(value.status).toBe(2)
    expect(value.stderr.split('\n')).toHaveLength(2)
    expect(value.stderr).toMatch(/^sluice: sluice validate: .*--config.* \(run sluice validate --help\) \[SLUICE_ERR_CLI_USAGE\]\n$/)
    const unknown = run(['frobnicate', '--help'], dir)
    expect(unknown.status).toBe(2)
    expect(unknown.stderr).toBe('sluice: unknown command "frobnicate"; run sluice --help [SLUICE_ERR_CLI_USAGE]\n')
  })
})
