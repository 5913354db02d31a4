/**
 * The Store contract: every implementation (SQLite, PostgreSQL) runs these same tests through
 * `storeContract(name, target)`. `target()` gives a fresh, empty database and a way to open store
 * objects on it; two objects on one database stand for two gateway instances sharing it.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { replayLeaseKey, type DeadLetter, type Lease, type Store } from '../../src/store/store.js'
import { waitFor } from '../helpers/gateway.js'

export interface StoreTarget {
  /** Opens a store object on the target's database (call twice for two "instances"). */
  open(): Promise<Store>
}

const event = (id: string, body: unknown = { n: 1 }): TriggerEvent => ({
  id,
  source: 'amqp://queue/telemetry',
  key: 'station-7',
  time: '2026-12-05T07:00:00.000Z',
  body,
  meta: { queue: 'telemetry', deliveryTag: 42, partition: 3, offset: '18446744073709551615' },
  attempt: 3,
})

const letter = (fn: string, id: string, code = 'SLUICE_ERR_FUNCTION_THREW', body?: unknown): Omit<DeadLetter, 'id' | 'replay'> => ({
  function: fn,
  event: event(id, body),
  error: { code: code as DeadLetter['error']['code'], message: `failed ${id}`, retriable: true },
  attempts: 3,
  firstAttemptAt: '2026-12-05T07:00:01.250Z',
  failedAt: '2026-12-05T07:00:09.500Z',
})

export function storeContract(name: string, target: () => Promise<StoreTarget>): void {
  /** A fresh database with one open store object on it; both closed after the test. */
  async function fresh(): Promise<{ s: Store; another(): Promise<Store> }> {
    const t = await target()
    const opened: Store[] = []
    onTestFinished(async () => {
      for (const s of opened) await s.close()
    })
    const another = async () => {
      const s = await t.open()
      opened.push(s)
      return s
    }
    return { s: await another(), another }
  }

  describe(`Store contract: ${name}`, () => {
    it('keeps a dead letter with its payload, source position, error and attempts, byte for byte', async () => {
      const { s } = await fresh()
      const body = { text: 'zürich ✓ \u0000 nul', nested: [[[{ deep: true }]]], big: 2 ** 53 + 2, order: { z: 1, a: 2 } }
      const id = await s.putDeadLetter(letter('telemetry', 'e1', 'SLUICE_ERR_FUNCTION_THREW', body))
      const got = await s.getDeadLetter(id)
      expect(got).toEqual({ id, ...letter('telemetry', 'e1', 'SLUICE_ERR_FUNCTION_THREW', body) })
      expect(Object.keys((got?.event.body as { order: object }).order)).toEqual(['z', 'a'])
      expect(got?.replay).toBeUndefined()
      expect(await s.getDeadLetter('no-such-id')).toBeUndefined()
    })

    it('lists dead letters oldest first, by function and code, paged with after and limit; counts and deletes', async () => {
      const { s } = await fresh()
      const ids: string[] = []
      for (let i = 0; i < 5; i++)
        ids.push(await s.putDeadLetter(letter(i % 2 ? 'b' : 'a', `e${i}`, i === 4 ? 'SLUICE_ERR_FUNCTION_TIMEOUT' : 'SLUICE_ERR_FUNCTION_THREW')))
      expect((await s.listDeadLetters()).map((d) => d.id)).toEqual(ids)
      expect((await s.listDeadLetters({ function: 'a' })).map((d) => d.event.id)).toEqual(['e0', 'e2', 'e4'])
      expect((await s.listDeadLetters({ code: 'SLUICE_ERR_FUNCTION_TIMEOUT' })).map((d) => d.event.id)).toEqual(['e4'])
      expect((await s.listDeadLetters({ function: 'a', code: 'SLUICE_ERR_FUNCTION_THREW' })).map((d) => d.event.id)).toEqual(['e0', 'e2'])
      expect((await s.listDeadLetters({ limit: 2 })).map((d) => d.id)).toEqual(ids.slice(0, 2))
      expect((await s.listDeadLetters({ after: ids[1], limit: 2 })).map((d) => d.id)).toEqual(ids.slice(2, 4))
      expect(await s.countDeadLetters()).toBe(5)
      expect(await s.countDeadLetters('b')).toBe(2)
      expect(await s.countDeadLetters('nobody')).toBe(0)
      expect(await s.deleteDeadLetter(ids[0] as string)).toBe(true)
      expect(await s.deleteDeadLetter(ids[0] as string)).toBe(false)
      expect(await s.countDeadLetters('a')).toBe(2)
    })

    it('writes a dead letter with a given id once, however often the write is retried', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const dl = { ...letter('telemetry', 'e1'), id: 'fixed-id-1' }
      const ids = await Promise.all([s.putDeadLetter(dl), b.putDeadLetter(dl), s.putDeadLetter(dl)])
      expect(ids).toEqual(['fixed-id-1', 'fixed-id-1', 'fixed-id-1'])
      expect(await s.countDeadLetters()).toBe(1)
    })

    it('keeps connector state per scope and key, overwrites it, and deletes it', async () => {
      const { s, another } = await fresh()
      expect(await s.getState('timer:a', 'status')).toBeUndefined()
      await s.setState('timer:a', 'status', { last: 'x', n: [1, 2] })
      await s.setState('timer:b', 'status', 'other scope')
      await s.setState('timer:a', 'status', { last: 'y' })
      const b = await another()
      expect(await b.getState('timer:a', 'status')).toEqual({ last: 'y' })
      expect(await b.getState('timer:b', 'status')).toBe('other scope')
      expect(await s.deleteState('timer:a', 'status')).toBe(true)
      expect(await s.deleteState('timer:a', 'status')).toBe(false)
      expect(await b.getState('timer:a', 'status')).toBeUndefined()
      expect(await b.getState('timer:b', 'status')).toBe('other scope')
    })

    it('compare-and-set inserts only when absent, updates only at the expected version, lists by literal prefix', async () => {
      const { s } = await fresh()
      const v1 = await s.compareAndSet('sc', 'p/1', { n: 1 }, undefined)
      expect(v1).toBeDefined()
      expect(await s.compareAndSet('sc', 'p/1', { n: 9 }, undefined)).toBeUndefined()
      const v2 = await s.compareAndSet('sc', 'p/1', { n: 2 }, v1)
      expect(v2).toBeDefined()
      expect(v2).not.toBe(v1)
      expect(await s.compareAndSet('sc', 'p/1', { n: 3 }, v1)).toBeUndefined()
      expect(await s.compareAndSet('sc', 'p/1', { n: 3 }, 'not-a-version')).toBeUndefined()
      await s.compareAndSet('sc', 'p/0', 0, undefined)
      await s.compareAndSet('sc', 'P/9', 'upper case sorts first', undefined)
      await s.compareAndSet('sc', 'x%_/1', 'literal', undefined)
      await s.compareAndSet('other', 'p/2', 'other scope', undefined)
      await s.setState('sc', 'p/3', 'a plain value')
      expect((await s.listVersioned('sc', 'p/')).map((r) => [r.key, r.value])).toEqual([
        ['p/0', 0],
        ['p/1', { n: 2 }],
      ])
      expect((await s.listVersioned('sc', '')).map((r) => r.key)).toEqual(['P/9', 'p/0', 'p/1', 'x%_/1'])
      expect((await s.listVersioned('sc', 'x%_/')).map((r) => r.key)).toEqual(['x%_/1'])
      expect(await s.listVersioned('sc', 'x_')).toEqual([])
    })

    it('lets exactly one of two store objects win a compare-and-set race for one version', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const v = (await s.compareAndSet('sc', 'k', 'base', undefined)) as string
      for (let round = 0; round < 5; round++) {
        const cur = (await s.listVersioned('sc', 'k'))[0]?.version as string
        const results = await Promise.all([s.compareAndSet('sc', 'k', `a${round}`, cur), b.compareAndSet('sc', 'k', `b${round}`, cur)])
        expect(results.filter((r) => r !== undefined)).toHaveLength(1)
        const winner = results[0] !== undefined ? `a${round}` : `b${round}`
        expect((await b.listVersioned('sc', 'k'))[0]).toEqual({ key: 'k', value: winner, version: results.find((r) => r !== undefined) })
      }
      expect(v).toBeDefined()
    })

    it('keeps function keys as hashes, replaces a key of the same name, lists by name, deletes', async () => {
      const { s } = await fresh()
      await s.addFunctionKey('api', 'default', 'h1')
      await s.addFunctionKey('api', 'ci', 'h2')
      await s.addFunctionKey('other', 'default', 'h3')
      expect((await s.functionKeyHashes('api')).sort()).toEqual(['h1', 'h2'])
      await s.addFunctionKey('api', 'default', 'h4')
      expect((await s.functionKeyHashes('api')).sort()).toEqual(['h2', 'h4'])
      const keys = await s.listFunctionKeys('api')
      expect(keys.map((k) => k.name)).toEqual(['ci', 'default'])
      for (const k of keys) expect(Number.isNaN(Date.parse(k.createdAt))).toBe(false)
      expect(await s.deleteFunctionKey('api', 'ci')).toBe(true)
      expect(await s.deleteFunctionKey('api', 'ci')).toBe(false)
      expect(await s.functionKeyHashes('api')).toEqual(['h4'])
      expect(await s.functionKeyHashes('nobody')).toEqual([])
    })

    it('holds a lease for one owner; renew keeps it; release hands it on at once with the same attempt', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const got = await s.acquireLease('tick:1', 'gw-a', 60_000)
      expect(got.acquired && got.lease.attempt).toBe(1)
      const lease = (got as { lease: Lease }).lease
      const refused = await b.acquireLease('tick:1', 'gw-b', 60_000)
      expect(refused).toMatchObject({ acquired: false, owner: 'gw-a', finished: false })
      expect(!refused.acquired && refused.retryInMs).toBeGreaterThan(0)
      expect(!refused.acquired && refused.retryInMs).toBeLessThanOrEqual(60_000)
      expect(await s.renewLease(lease, 60_000)).toBe(true)
      expect(await b.acquireLease('tick:1', 'gw-b', 60_000)).toMatchObject({ acquired: false })
      expect(await s.releaseLease(lease)).toBe(true)
      // Released: the work was given back on purpose, so the attempt is not counted on.
      const next = await b.acquireLease('tick:1', 'gw-b', 60_000)
      expect(next).toMatchObject({ acquired: true, lease: { key: 'tick:1', attempt: 1 } })
      // The old token is dead: none of its transitions apply any more.
      expect(await s.renewLease(lease, 60_000)).toBe(false)
      expect(await s.releaseLease(lease)).toBe(false)
      expect(await s.finishLease(lease, 60_000)).toBe(false)
      expect(await s.acquireLease('tick:2', 'gw-a', 60_000)).toMatchObject({ acquired: true, lease: { attempt: 1 } })
    })

    it('lets an expired lease be taken over once, with the attempt counted on; the old holder loses it', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const first = await s.acquireLease('tick:x', 'gw-a', 150)
      const lease = (first as { lease: Lease }).lease
      const taken = await waitFor(
        async () => {
          const r = await b.acquireLease('tick:x', 'gw-b', 60_000)
          return r.acquired && r.lease
        },
        10_000,
        'the lease to expire',
      )
      expect(taken.attempt).toBe(2)
      expect(taken.token).not.toBe(lease.token)
      expect(await s.renewLease(lease, 60_000)).toBe(false)
      expect(await s.finishLease(lease, 60_000)).toBe(false)
      expect(await s.acquireLease('tick:x', 'gw-a', 60_000)).toMatchObject({ acquired: false, owner: 'gw-b' })
      // And again: a third holder after the second one's lease runs out.
      expect(await b.renewLease(taken, 150)).toBe(true)
      const third = await waitFor(
        async () => {
          const r = await s.acquireLease('tick:x', 'gw-c', 60_000)
          return r.acquired && r.lease
        },
        10_000,
        'the second lease to expire',
      )
      expect(third.attempt).toBe(3)
    })

    it('keeps a finished lease from everyone until its retention passes, then starts over at attempt 1', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const lease = ((await s.acquireLease('tick:f', 'gw-a', 60_000)) as { lease: Lease }).lease
      expect(await s.finishLease(lease, 300)).toBe(true)
      expect(await b.acquireLease('tick:f', 'gw-b', 60_000)).toMatchObject({ acquired: false, finished: true })
      expect(await s.renewLease(lease, 60_000)).toBe(false)
      expect(await s.releaseLease(lease)).toBe(false)
      const again = await waitFor(
        async () => {
          const r = await b.acquireLease('tick:f', 'gw-b', 60_000)
          return r.acquired && r.lease
        },
        10_000,
        'the retention to pass',
      )
      expect(again.attempt).toBe(1)
    })

    it('grants a contended lease to exactly one of many concurrent acquirers on two store objects', async () => {
      const { s, another } = await fresh()
      const b = await another()
      for (let round = 0; round < 5; round++) {
        const key = `race:${round}`
        const tries = Array.from({ length: 16 }, (_, i) => (i % 2 ? b : s).acquireLease(key, `gw-${i}`, 60_000))
        const results = await Promise.all(tries)
        expect(results.filter((r) => r.acquired)).toHaveLength(1)
      }
      // An expired lease, contended: exactly one takes it over.
      await s.acquireLease('race:expired', 'gw-dead', 100)
      // Waiting out a 100 ms lease (not a timing assertion: any later moment is as good).
      await new Promise((r) => setTimeout(r, 400))
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? b : s).acquireLease('race:expired', `gw-${i}`, 60_000)))
      expect(results.filter((r) => r.acquired)).toHaveLength(1)
    })

    it('claims a key for one caller until the ttl passes', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const both = await Promise.all([s.claim('once', 200), b.claim('once', 200)])
      expect(both.filter(Boolean)).toHaveLength(1)
      expect(await s.claim('once', 200)).toBe(false)
      await waitFor(() => b.claim('once', 60_000), 10_000, 'the claim to expire')
      expect(await s.claim('once', 60_000)).toBe(false)
    })

    it('shows a dead letter as being replayed while its replay lease is held, on every store object', async () => {
      const { s, another } = await fresh()
      const b = await another()
      const id = await s.putDeadLetter(letter('telemetry', 'e1'))
      const racers = await Promise.all([s.acquireLease(replayLeaseKey(id), 'gw-a', 60_000), b.acquireLease(replayLeaseKey(id), 'gw-b', 60_000)])
      expect(racers.filter((r) => r.acquired)).toHaveLength(1)
      const won = racers.find((r) => r.acquired) as { lease: Lease }
      const owner = racers[0]?.acquired ? 'gw-a' : 'gw-b'
      expect((await b.getDeadLetter(id))?.replay).toEqual({ owner, attempt: 1 })
      expect((await s.listDeadLetters())[0]?.replay).toEqual({ owner, attempt: 1 })
      expect(await (owner === 'gw-a' ? s : b).releaseLease(won.lease)).toBe(true)
      expect((await s.getDeadLetter(id))?.replay).toBeUndefined()
    })

    it('reports itself up and closes idempotently', async () => {
      const t = await target()
      const s = await t.open()
      expect(s.health()).toMatchObject({ up: true })
      expect(Number.isNaN(Date.parse(s.health().since))).toBe(false)
      await Promise.all([s.close(), s.close()])
      await s.close()
    })
  })
}
