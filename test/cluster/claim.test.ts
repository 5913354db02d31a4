/**
 * The start-time instance id check (src/cluster/claim.ts) on a SQLite store, with the other
 * process played by this test writing its heartbeats: no row, a stopped row and an expired row are
 * free; a holder that beats again is refused with SLUICE_ERR_INSTANCE_DUPLICATE_ID; one that is
 * stopping is waited for until it records itself stopped; a silent one is waited out; after a
 * start race, the other process's next beat refuses this one.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { waitForInstanceId, type ClaimDeps } from '../../src/cluster/claim.js'
import type { InstanceSettings } from '../../src/cluster/identity.js'
import type { InstanceReport } from '../../src/cluster/types.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { foreignInstance } from '../helpers/instance-report.js'
import { memoryLog } from '../store/pg.js'

const SETTINGS: InstanceSettings = { id: 'gw', source: 'host', heartbeatMs: 100, expiryMs: 1000 }

function setup(): { deps: ClaimDeps; store: SqliteStore; log: ReturnType<typeof memoryLog>; beat(inc: string, state: InstanceReport['state']): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-claim-'))
  const store = new SqliteStore(join(dir, 'state.db'))
  onTestFinished(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const log = memoryLog()
  const doc = (state: InstanceReport['state']): InstanceReport => foreignInstance({ version: '0', host: 'other-host', pid: 4242, state })
  return {
    deps: { store, settings: SETTINGS, incarnation: 'me', log, stopped: () => false },
    store,
    log,
    beat: async (inc, state) => {
      await store.heartbeatInstance(SETTINGS.id, inc, doc(state))
    },
  }
}

const codeOf = (e: unknown) => (e as { code?: string }).code
const waits = (log: ReturnType<typeof memoryLog>) => log.lines.filter((l) => /is held by/.test(l.msg ?? ''))

describe('instance id check at start', () => {
  it('starts at once with no row, a stopped row, or an expired one', async () => {
    const s = setup()
    expect(await waitForInstanceId(s.deps)).toEqual({})
    await s.beat('old', 'stopped')
    expect(await waitForInstanceId(s.deps)).toEqual({ waitedOut: 'old' })
    expect(waits(s.log)).toEqual([])

    const e = setup()
    await e.beat('dead', 'up')
    const late = await waitForInstanceId({ ...e.deps, settings: { ...SETTINGS, expiryMs: 0 } })
    expect(late).toEqual({ waitedOut: 'dead' })
    expect(waits(e.log)).toEqual([])
  })

  it('waits out a silent holder, logging the wait, then starts', async () => {
    const s = setup()
    await s.beat('killed', 'up')
    expect(await waitForInstanceId(s.deps)).toEqual({ waitedOut: 'killed' })
    expect(waits(s.log)).toHaveLength(1)
    expect(waits(s.log)[0]?.obj).toMatchObject({ other: { incarnation: 'killed', host: 'other-host', pid: 4242, state: 'up' }, expiryMs: 1000 })
    expect(s.log.lines.some((l) => /its heartbeat expired\): starting/.test(l.msg ?? ''))).toBe(true)
  })

  it('refuses when the holder beats again, saying what to set', async () => {
    const s = setup()
    await s.beat('live', 'up')
    const beating = setInterval(() => void s.beat('live', 'up'), 50)
    onTestFinished(() => clearInterval(beating))
    const err = await waitForInstanceId(s.deps).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(codeOf(err)).toBe('SLUICE_ERR_INSTANCE_DUPLICATE_ID')
    expect(err?.message).toContain('neither instance.id nor SLUICE_INSTANCE_ID is set')
    expect(err?.message).toContain('host other-host, pid 4242')
    expect(s.log.lines.find((l) => l.level === 'error')?.obj).toMatchObject({ code: 'SLUICE_ERR_INSTANCE_DUPLICATE_ID' })
  })

  it('waits for a holder that is stopping until it has stopped', async () => {
    const s = setup()
    await s.beat('draining', 'stopping')
    let n = 0
    const beating = setInterval(() => void s.beat('draining', ++n < 8 ? 'stopping' : 'stopped'), 50)
    onTestFinished(() => clearInterval(beating))
    expect(await waitForInstanceId(s.deps)).toEqual({ waitedOut: 'draining' })
    expect(s.log.lines.some((l) => /has stopped: starting/.test(l.msg ?? ''))).toBe(true)
  })

  it('after a start race, refuses once the other process beats again', async () => {
    const s = setup()
    // Our first write replaced the other's row; its next write is proof that it lives.
    await s.beat('me', 'starting')
    const wait = waitForInstanceId(s.deps, { incarnation: 'rival', ageMs: 0 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    await s.beat('rival', 'starting')
    expect(codeOf(await wait)).toBe('SLUICE_ERR_INSTANCE_DUPLICATE_ID')
  })
})
