/**
 * The Store methods of the cluster registry, on SQLite (a temp file) and on PostgreSQL (the local
 * server, a fresh schema), with two store objects on one database standing for two instances.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { PostgresStore } from '../../src/store/postgres.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import type { Store } from '../../src/store/store.js'
import { waitFor } from '../helpers/gateway.js'
import { memoryLog, PG_URL, tempSchema } from '../store/pg.js'

type Open = () => Promise<{ open(): Promise<Store> }>

const sqlite: Open = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-registry-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return { open: async () => new SqliteStore(join(dir, 'state.db')) }
}

const postgres: Open = async () => {
  const schema = tempSchema()
  return { open: () => PostgresStore.open({ url: PG_URL, schema, log: memoryLog() }) }
}

for (const [name, target] of [
  ['sqlite', sqlite],
  ['postgres', postgres],
] as const) {
  describe(`instance registry on ${name}`, () => {
    async function two(): Promise<[Store, Store]> {
      const t = await target()
      const a = await t.open()
      const b = await t.open()
      onTestFinished(async () => {
        await a.close()
        await b.close()
      })
      return [a, b]
    }

    it('writes heartbeats, says what each one replaced, and lists rows with their age', async () => {
      const [a, b] = await two()
      expect(await a.heartbeatInstance('i-1', 'run-1', { n: 1 })).toEqual({})
      const again = await a.heartbeatInstance('i-1', 'run-1', { n: 2 })
      expect(again.previous?.incarnation).toBe('run-1')
      expect(again.previous?.ageMs).toBeGreaterThanOrEqual(0)
      // Another process with the same id: it sees run-1 as the previous writer.
      expect((await b.heartbeatInstance('i-1', 'run-2', { n: 3 })).previous?.incarnation).toBe('run-1')
      await b.heartbeatInstance('i-0', 'run-x', { n: 0 })
      const rows = await a.listInstances(3_600_000)
      expect(rows.map((r) => [r.id, r.incarnation, r.doc])).toEqual([
        ['i-0', 'run-x', { n: 0 }],
        ['i-1', 'run-2', { n: 3 }],
      ])
      expect(Date.parse(rows[0]?.heartbeatAt ?? '')).not.toBeNaN()
      await waitFor(async () => ((await a.listInstances(3_600_000))[0]?.ageMs ?? 0) >= 50, 5000, 'the row ages')
    })

    it('updates a row only while its incarnation holds it, and forgets old rows', async () => {
      const [a] = await two()
      await a.heartbeatInstance('i-2', 'run-1', { sessions: ['x'] })
      expect(await a.updateInstance('i-2', 'run-0', { sessions: [] })).toBe(false)
      expect(await a.updateInstance('i-2', 'run-1', { sessions: [], takenOver: true })).toBe(true)
      expect((await a.listInstances(3_600_000)).find((r) => r.id === 'i-2')?.doc).toEqual({ sessions: [], takenOver: true })
      await waitFor(async () => ((await a.listInstances(3_600_000))[0]?.ageMs ?? 0) >= 30, 5000, 'the row ages')
      expect(await a.listInstances(10)).toEqual([])
    })
  })
}
