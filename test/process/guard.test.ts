/**
 * The process guard in a real child process: an unhandled rejection or an uncaught exception is
 * logged with its code, stack and component, the drain runs to its end (the in-flight ack is
 * written), and the process exits non-zero. A second failure during the drain does not cut it short.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
const CHILD = resolve('test/process/guard-child.ts')

async function runChild(mode: string): Promise<{ code: number | null; lines: Array<Record<string, unknown>> }> {
  const child = spawn(process.execPath, ['--import', TSX, CHILD, mode], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } })
  let stdout = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)))
  const lines = stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  return { code, lines }
}

describe('process guard', () => {
  it('an unhandled rejection is logged with its context, the drain finishes, and the exit is non-zero', async () => {
    const { code, lines } = await runChild('rejection')
    expect(code).toBe(1)
    const fatal = lines.find((l) => l.level === 'error')
    expect(fatal).toMatchObject({
      component: 'process',
      origin: 'unhandledRejection',
      err: { code: 'SLUICE_ERR_INTERNAL', name: 'RangeError', message: 'Maximum call stack size exceeded' },
    })
    expect(String((fatal?.err as { stack?: string }).stack)).toMatch(/guard-child\.ts/)
    expect(lines.map((l) => l.step).filter(Boolean)).toEqual(['ready', 'drain started', 'acked'])
  })

  it('an uncaught exception drains the same way', async () => {
    const { code, lines } = await runChild('exception')
    expect(code).toBe(1)
    expect(lines.find((l) => l.level === 'error')).toMatchObject({
      component: 'process',
      origin: 'uncaughtException',
      err: { code: 'SLUICE_ERR_INTERNAL', name: 'TypeError' },
    })
    expect(lines.map((l) => l.step).filter(Boolean)).toEqual(['ready', 'drain started', 'acked'])
  })

  it('a second failure during the drain is logged and the drain still finishes', async () => {
    const { code, lines } = await runChild('twice')
    expect(code).toBe(1)
    const errors = lines.filter((l) => l.level === 'error')
    expect(errors.map((l) => l.draining)).toEqual([false, true])
    expect((errors[1]?.err as { message?: string }).message).toBe('second failure while draining')
    expect(lines.map((l) => l.step).filter(Boolean)).toEqual(['ready', 'drain started', 'acked'])
  })
})
