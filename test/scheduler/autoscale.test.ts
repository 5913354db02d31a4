import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import { CHANNELS, type InstanceMessage } from '../../src/channels.js'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

const WORK = `export default async function (events) {
  // About 1 ms of work per event, so a burst builds a backlog.
  const end = Date.now() + events.length
  while (Date.now() < end) {}
  return { n: events.length }
}`

let t: TestGateway | undefined
afterEach(async () => {
  await t?.stop()
  t = undefined
})

const ev = (i: number): TriggerEvent => ({ id: `b${i}`, source: 'test://burst', time: new Date().toISOString(), body: { i }, meta: {} })

describe('autoscaling', () => {
  it('scales up under a burst, back to scale.min when idle, and loses nothing', async () => {
    t = await startGateway({
      hosts: 2,
      yaml: `functions:
  work:
    code: functions/work.js
    trigger: { timer: { schedule: "0 0 0 1 1 *" } }
    batch: { maxSize: 50, maxWaitMs: 5 }
    orderKey: none
    scale: { min: 1, max: 4, idleTimeoutMs: 400 }
    maxBacklog: 100000
`,
      files: { 'functions/work.js': WORK },
    })
    const g = t
    const counts: number[] = []
    const onInstance = (m: unknown) => {
      const msg = m as InstanceMessage
      if (msg.gateway === g.gw.id && msg.function === 'work') counts.push(msg.instances)
    }
    subscribe(CHANNELS.instance, onInstance)
    try {
      await waitFor(() => g.gw.scheduler.stats('work').instances === 1, 5000, 'scale.min instance')
      // Idle, then a burst of thousands of events, then idle.
      await new Promise((r) => setTimeout(r, 200))
      const burst = Array.from({ length: 3000 }, (_, i) => ev(i))
      const outcomes = await g.gw.router.deliver('work', burst)
      expect(outcomes.filter((o) => o.status === 'done')).toHaveLength(burst.length)
      const peak = Math.max(...counts)
      expect(peak).toBeGreaterThan(1)
      expect(peak).toBeLessThanOrEqual(4)
      // Instances were spread over both hosts.
      const info = g.gw.function('work')
      expect(info?.counts.eventsDone).toBe(3000)
      await waitFor(() => g.gw.scheduler.stats('work').instances === 1, 10_000, 'scale back to min')
      expect(counts.at(-1)).toBe(1)
    } finally {
      unsubscribe(CHANNELS.instance, onInstance)
    }
  })

  it('scales to zero with scale.min 0 and measures the cold start', async () => {
    t = await startGateway({
      yaml: `functions:
  work:
    code: functions/work.js
    trigger: { timer: { schedule: "0 0 0 1 1 *" } }
    scale: { min: 0, max: 2, idleTimeoutMs: 200 }
`,
      files: { 'functions/work.js': WORK },
    })
    const g = t
    expect(g.gw.scheduler.stats('work').instances).toBe(0)
    const [o] = await g.gw.router.deliver('work', [ev(1)])
    expect(o?.status).toBe('done')
    expect(g.gw.function('work')?.counts.coldStarts).toBe(1)
    expect(g.logs.find('cold start').length).toBe(1)
    await waitFor(() => g.gw.scheduler.stats('work').instances === 0, 5000, 'scale to zero')
  })
})
