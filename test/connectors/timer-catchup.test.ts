import { createTask } from 'node-cron'
import { describe, expect, it } from 'vitest'
import { latestMissedTick } from '../../connectors/timer/timer-connector.js'

describe('catchUp: latest picks the latest missed tick', () => {
  it('hourly schedule, down for five hours: the last full hour', async () => {
    const task = createTask('0 0 * * * *', () => undefined)
    const now = new Date('2026-11-27T10:17:42Z')
    const firstMissed = new Date('2026-11-27T06:00:00Z')
    expect(latestMissedTick(task, '0 0 * * * *', firstMissed, now).toISOString()).toBe('2026-11-27T10:00:00.000Z')
    await task.destroy()
  })

  it('reads the schedule in its time zone', async () => {
    // 03:00 in Amsterdam is 02:00Z in winter.
    const task = createTask('0 0 3 * * *', () => undefined, { timezone: 'Europe/Amsterdam' })
    const now = new Date('2026-11-27T12:00:00Z')
    expect(latestMissedTick(task, '0 0 3 * * *', new Date('2026-11-24T02:00:00Z'), now).toISOString()).toBe('2026-11-27T02:00:00.000Z')
    await task.destroy()
  })

  it('with seconds: the latest second slot not after now', async () => {
    const task = createTask('*/15 * * * * *', () => undefined)
    const now = new Date('2026-11-27T10:17:42Z')
    expect(latestMissedTick(task, '*/15 * * * * *', new Date('2026-11-27T10:10:00Z'), now).toISOString()).toBe('2026-11-27T10:17:30.000Z')
    await task.destroy()
  })

  it('beyond the search window: the first missed tick', async () => {
    const task = createTask('0 0 0 1 1 *', () => undefined)
    const firstMissed = new Date('2025-01-01T00:00:00Z')
    expect(latestMissedTick(task, '0 0 0 1 1 *', firstMissed, new Date('2026-11-27T10:00:00Z')).toISOString()).toBe(firstMissed.toISOString())
    await task.destroy()
  })
})
