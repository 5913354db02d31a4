/** Compare-and-set rows of the SQLite store (ConnectorState.list / compareAndSet). */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/store/sqlite.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function file(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-cas-'))
  dirs.push(d)
  return join(d, 'state.db')
}

describe('SqliteStore compare-and-set rows', () => {
  it('inserts only when absent and updates only at the expected version', async () => {
    const s = new SqliteStore(':memory:')
    const v1 = await s.compareAndSet('sc', 'a', { n: 1 }, undefined)
    expect(v1).toBeDefined()
    expect(await s.compareAndSet('sc', 'a', { n: 2 }, undefined)).toBeUndefined()
    const v2 = await s.compareAndSet('sc', 'a', { n: 2 }, v1)
    expect(v2).toBeDefined()
    expect(v2).not.toBe(v1)
    // The old version lost: someone else wrote since.
    expect(await s.compareAndSet('sc', 'a', { n: 3 }, v1)).toBeUndefined()
    expect(await s.listVersioned('sc', 'a')).toEqual([{ key: 'a', value: { n: 2 }, version: v2 }])
    await s.close()
  })

  it('lists by prefix within a scope, in key order, apart from getState values', async () => {
    const s = new SqliteStore(':memory:')
    await s.compareAndSet('sc', 'p/2', 2, undefined)
    await s.compareAndSet('sc', 'p/1', 1, undefined)
    await s.compareAndSet('sc', 'q/1', 'other prefix', undefined)
    await s.compareAndSet('other', 'p/3', 'other scope', undefined)
    await s.setState('sc', 'p/4', 'a plain value')
    expect((await s.listVersioned('sc', 'p/')).map((r) => [r.key, r.value])).toEqual([
      ['p/1', 1],
      ['p/2', 2],
    ])
    // A prefix with LIKE wildcards in it is matched literally.
    await s.compareAndSet('sc', 'x%_/1', 'literal', undefined)
    expect((await s.listVersioned('sc', 'x%_/')).map((r) => r.key)).toEqual(['x%_/1'])
    expect(await s.listVersioned('sc', 'x_')).toEqual([])
    await s.close()
  })

  it('lets exactly one of two stores on one file win a race for the same version', async () => {
    const path = file()
    const a = new SqliteStore(path)
    const b = new SqliteStore(path)
    const v = (await a.compareAndSet('sc', 'k', 'base', undefined)) as string
    const results = await Promise.all([a.compareAndSet('sc', 'k', 'from a', v), b.compareAndSet('sc', 'k', 'from b', v)])
    expect(results.filter((r) => r !== undefined)).toHaveLength(1)
    const winner = results[0] !== undefined ? 'from a' : 'from b'
    expect((await b.listVersioned('sc', 'k'))[0]?.value).toBe(winner)
    await a.close()
    await b.close()
  })
})
