/**
 * The connector conformance suite: every trigger connector runs it against its real broker (or
 * the wire-protocol test server where no real one can run here), as Benthos's
 * integration.StreamTests and dapr's conformance tests do. A connector provides a harness:
 * unique source names per test, a publisher that resolves once the broker confirmed, and
 * (optionally) a broker restart.
 *
 * The function under test logs `seen <json>` with what it received; the suite reads those lines
 * from the gateway's log stream.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

export interface HarnessSource {
  /** `connections:` entries (YAML, indented two spaces), e.g. `  devices: { kind: mqtt, url: ... }`. */
  connectionsYaml: string
  /** The trigger object for the function (flow YAML), e.g. `{ mqtt: { connection: devices, topic: t/x, qos: 1 } }`. */
  triggerYaml: string
  /** Publishes one message per body (JSON), resolving once the broker confirmed every one. */
  publish(bodies: Array<Record<string, unknown>>): Promise<void>
  /** Restarts the broker this source lives on, keeping its durable state (sessions, queues). */
  restartBroker(): Promise<void>
  /** Removes what the test created at the broker. */
  cleanup(): Promise<void>
}

export interface ConformanceHarness {
  /** Connector kind, used in test names. */
  kind: string
  /** A fresh source (unique topic/queue/stream names) for one test. */
  source(): Promise<HarnessSource>
}

const RECORDER = `
export default async function (events, ctx) {
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => ({ n: e.body.n, attempt: e.attempt, key: e.key ?? null, id: e.id }))))
  const failed = []
  for (const e of events) {
    if (e.body.failAttempts && e.attempt <= e.body.failAttempts) failed.push(e.id)
    if (e.body.sleepMs) { const end = Date.now() + e.body.sleepMs; while (Date.now() < end) {} }
  }
  return failed.length ? { failed } : { ok: true }
}`

interface Seen {
  n: number
  attempt: number
  key: string | null
  id: string
}

function seenOf(t: TestGateway): Seen[][] {
  return t.logs.lines
    .filter((l) => l.source === 'function' && typeof l.msg === 'string' && l.msg.startsWith('seen '))
    .map((l) => JSON.parse((l.msg as string).slice(5)) as Seen[])
}

const numbers = (t: TestGateway) =>
  new Set(
    seenOf(t)
      .flat()
      .map((s) => s.n),
  )

export function connectorConformance(h: ConformanceHarness): void {
  describe(`${h.kind} connector conformance`, () => {
    const cleanups: Array<() => Promise<void> | void> = []
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c()
    })

    async function gateway(src: HarnessSource, extra = '', dir?: string): Promise<TestGateway> {
      const t = await startGateway({
        ...(dir ? { dir } : {}),
        yaml: `connections:\n${src.connectionsYaml}\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: ${src.triggerYaml}\n    batch: { maxSize: 50, maxWaitMs: 20 }\n    retry: { maxAttempts: 5, backoff: fixed, initialDelayMs: 50 }\n${extra}`,
        files: { 'functions/rec.js': RECORDER },
      })
      cleanups.push(() => t.stop())
      return t
    }

    async function source(): Promise<HarnessSource> {
      const src = await h.source()
      cleanups.push(() => src.cleanup())
      return src
    }

    function stateDir(): string {
      const dir = mkdtempSync(join(tmpdir(), `sluice-conf-${h.kind}-`))
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
      return dir
    }

    it('starts, reports healthy, and stops idempotently', async () => {
      const t = await gateway(await source())
      expect(t.gw.health().connections.every((c) => c.up)).toBe(true)
      const a = t.gw.stop()
      const b = t.gw.stop()
      expect(a).toBe(b)
      await a
      expect(t.gw.health().status).toBe('stopping')
    })

    it('delivers every published message, in batches', async () => {
      const src = await source()
      const t = await gateway(src)
      const bodies = Array.from({ length: 300 }, (_, n) => ({ n }))
      await src.publish(bodies)
      await waitFor(() => numbers(t).size === 300, 30_000, 'all 300 messages')
      const batches = seenOf(t)
      expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(1)
      expect(batches.every((b) => b.every((s) => typeof s.id === 'string' && s.id.length > 0))).toBe(true)
    })

    it('acknowledges after success: a restarted gateway gets nothing again', async () => {
      const src = await source()
      const dir = stateDir()
      const t1 = await gateway(src, '', dir)
      await src.publish(Array.from({ length: 20 }, (_, n) => ({ n })))
      await waitFor(() => numbers(t1).size === 20, 30_000, 'first delivery')
      // Outcomes are acked once durable; give the acks a moment to reach the broker.
      await waitFor(() => t1.gw.function('rec')?.backlog === 0, 10_000, 'backlog drained')
      await new Promise((r) => setTimeout(r, 300))
      await t1.gw.stop()
      const t2 = await gateway(src, '', dir)
      await src.publish([{ n: 1000 }])
      await waitFor(() => numbers(t2).has(1000), 30_000, 'the new message')
      expect([...numbers(t2)]).toEqual([1000])
    })

    it('retries a failed message and delivers it again until it succeeds', async () => {
      const src = await source()
      const t = await gateway(src)
      await src.publish([{ n: 1, failAttempts: 2 }, { n: 2 }])
      await waitFor(
        () =>
          seenOf(t)
            .flat()
            .some((s) => s.n === 1 && s.attempt === 3),
        30_000,
        'third attempt',
      )
      await waitFor(() => t.gw.function('rec')?.counts.eventsDone === 2, 10_000, 'both done')
      expect(
        seenOf(t)
          .flat()
          .filter((s) => s.n === 2),
      ).toHaveLength(1)
    })

    it('redelivers what a stopped gateway had not finished', async () => {
      const src = await source()
      const dir = stateDir()
      const t1 = await gateway(src, '    scale: { max: 1 }\n', dir)
      await src.publish([{ n: 1, sleepMs: 1500 }, { n: 2 }, { n: 3 }])
      await waitFor(() => numbers(t1).has(1), 30_000, 'slow message running')
      await t1.gw.stop()
      const done1 = new Set(
        seenOf(t1)
          .flat()
          .map((s) => s.n),
      )
      const t2 = await gateway(src, '', dir)
      // Whatever the first gateway did not finish arrives again.
      await waitFor(() => [1, 2, 3].every((n) => done1.has(n) || numbers(t2).has(n)), 30_000, 'redelivery')
      expect([1, 2, 3].every((n) => done1.has(n) || numbers(t2).has(n))).toBe(true)
    })

    it('reconnects after a broker restart and loses nothing', async () => {
      const src = await source()
      const t = await gateway(src)
      await src.publish(Array.from({ length: 50 }, (_, n) => ({ n })))
      await waitFor(() => numbers(t).size === 50, 30_000, 'first half')
      await src.restartBroker()
      await waitFor(() => t.gw.health().connections.every((c) => c.up), 30_000, 'reconnected')
      await src.publish(Array.from({ length: 50 }, (_, n) => ({ n: n + 50 })))
      await waitFor(() => numbers(t).size === 100, 30_000, 'second half')
    })
  })
}
