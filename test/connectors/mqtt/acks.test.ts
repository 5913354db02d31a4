/**
 * When PUBACKs go out, seen from the broker's side: a wire tap between the gateway and a Mosquitto
 * of this file's own (max_inflight_messages 1000, so the broker does not stop sending while
 * PUBACKs wait) records every packet. These tests pin the mqtt.js 5.16.0 behaviour the connector
 * relies on (handleMessage's callback called with an error: no PUBACK, and mqtt.js reads on), so a
 * future mqtt.js that acks on its own, stops reading, or loses _sendPacket fails them.
 *
 * Log positions order things: the recorder's `seen` line is written before the router settles
 * the batch, and the tap notes how many log lines existed when it saw each PUBACK.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { projectDir, startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { startMosquitto, type Mosquitto } from './broker.js'
import { batches, publish, recGateway, seen, seenAt, uid } from './helpers.js'
import { ackedPublishes, wiretap, type Tap } from './wiretap.js'

let broker: Mosquitto
beforeAll(async () => {
  broker = await startMosquitto({ persistence: false })
})
afterAll(async () => {
  await broker?.close()
})

/** A project folder kept across gateways (same state store), removed after the test. */
function keptDir(): string {
  const p = projectDir({})
  onTestFinished(() => p.cleanup())
  return p.dir
}

async function tapped(): Promise<Tap> {
  const tap = await wiretap({ port: broker.port })
  onTestFinished(() => tap.close())
  return tap
}

/** PUBACKs the gateway sent, with the body of the message each answers and the log length then. */
function acks(tap: Tap, logAt: Map<number, number>) {
  return ackedPublishes(tap.packets).map(({ ack, publish: p }) => ({
    conn: ack.conn,
    seq: ack.seq,
    n: p ? (JSON.parse(p.payload ?? 'null') as { n: number }).n : undefined,
    logIndex: logAt.get(ack.seq) ?? -1,
  }))
}

/** Index of the first log line matching `pred`. */
const lineIndex = (t: TestGateway, pred: (l: Record<string, unknown>) => boolean) => t.logs.lines.findIndex(pred)
const seenLine = (n: number, attempt: number) => (l: Record<string, unknown>) => {
  const s = seenAt(l)
  return s !== undefined && s.n === n && s.attempt === attempt
}

async function setup(opts: { protocolVersion: 4 | 5; retry: string; batch?: string }) {
  const tap = await tapped()
  const connection = uid('c')
  const base = `acks/${uid()}`
  const t = await recGateway({
    connections: `  ${connection}: { kind: mqtt, url: "${tap.url}", protocolVersion: ${opts.protocolVersion}, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } }`,
    trigger: `{ mqtt: { connection: ${connection}, topic: "${base}/+", qos: 1 } }`,
    retry: opts.retry,
    ...(opts.batch ? { batch: opts.batch } : {}),
  })
  const logAt = new Map<number, number>()
  tap.onPacket = (p) => {
    if (p.cmd === 'puback' && p.dir === 'toBroker') logAt.set(p.seq, t.logs.lines.length)
  }
  return { tap, t, base, logAt }
}

describe.each([4, 5] as const)('mqtt PUBACKs, protocol version %i', (protocolVersion) => {
  it('waits for every outcome, answers in receive order, and keeps reading meanwhile', async () => {
    // Message 0 fails until its attempts run out (then it is dead-lettered); 1..29 succeed at once.
    const { tap, t, base, logAt } = await setup({ protocolVersion, retry: '{ maxAttempts: 10, backoff: fixed, initialDelayMs: 200 }' })
    const bodies = Array.from({ length: 30 }, (_, n) => (n === 0 ? { n, failAttempts: 1000 } : { n }))
    await publish(broker.url, (i) => `${base}/k${i}`, bodies)
    await waitFor(() => acks(tap, logAt).length === 30, 30_000, '30 PUBACKs')

    const sent = acks(tap, logAt)
    // In the order the PUBLISHes came, each once, all on the one connection.
    expect(sent.map((a) => a.n)).toEqual(bodies.map((b) => b.n))
    expect(new Set(sent.map((a) => a.conn)).size).toBe(1)
    // No PUBACK before the outcome: the first one (message 0's) went out after it was dead-lettered.
    const dead = lineIndex(t, (l) => l.msg === 'event dead-lettered')
    expect(dead).toBeGreaterThanOrEqual(0)
    expect(sent[0]?.logIndex).toBeGreaterThan(dead)
    // Messages 1..29 were done long before, yet their PUBACKs waited behind message 0.
    for (let n = 1; n < 30; n++) expect(lineIndex(t, seenLine(n, 1))).toBeLessThan(dead)
    // mqtt.js kept reading while PUBACKs waited: batches of more than one formed.
    const firstAck = sent[0]?.logIndex ?? 0
    const before = t.logs.lines.slice(0, firstAck).flatMap((l) => seenAt(l) ?? [])
    expect(Math.max(...before.map((s) => s.size))).toBeGreaterThan(1)
    expect(seen(t).filter((s) => s.n === 0)).toHaveLength(10)
  })
})

describe('mqtt poison messages', () => {
  it('gets exactly maxAttempts attempts, is dead-lettered, acked, and the stream flows on; replay runs it again', async () => {
    const { tap, t, base, logAt } = await setup({
      protocolVersion: 5,
      retry: '{ maxAttempts: 3, backoff: fixed, initialDelayMs: 50 }',
      batch: '{ maxSize: 1, maxWaitMs: 0 }',
    })
    // One topic (one key): the poison holds back the messages after it until it is dead-lettered.
    const first = Array.from({ length: 10 }, (_, n) => (n === 1 ? { n, throw: true } : { n }))
    await publish(broker.url, `${base}/k`, first)
    await waitFor(() => acks(tap, logAt).length === 10, 30_000, 'first 10 PUBACKs')
    await publish(
      broker.url,
      `${base}/k`,
      Array.from({ length: 10 }, (_, i) => ({ n: 10 + i })),
    )
    await waitFor(() => acks(tap, logAt).length === 20, 30_000, 'all 20 PUBACKs')

    expect(acks(tap, logAt).map((a) => a.n)).toEqual(Array.from({ length: 20 }, (_, n) => n))
    expect(
      seen(t)
        .filter((s) => s.n === 1)
        .map((s) => s.attempt),
    ).toEqual([1, 2, 3])
    for (let n = 0; n < 20; n++) if (n !== 1) expect(seen(t).filter((s) => s.n === n)).toHaveLength(1)
    const letters = await t.gw.listDeadLetters({ function: 'rec' })
    expect(letters).toHaveLength(1)
    const letter = letters[0]
    expect(letter?.attempts).toBe(3)
    expect(letter?.error.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(letter?.event.body).toEqual({ n: 1, throw: true })
    expect(letter?.event.meta.topic).toBe(`${base}/k`)
    // Its PUBACK went out only once the letter was written.
    const deadAt = lineIndex(t, (l) => l.msg === 'event dead-lettered')
    expect(acks(tap, logAt).find((a) => a.n === 1)?.logIndex).toBeGreaterThan(deadAt)

    const res = await fetch(`${t.url}/admin/dead-letters/${letter?.id}/replay`, { method: 'POST', headers: { 'content-type': 'application/json' } })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { outcome: { status: string; deadLetterId?: string } }
    // Still poison: three more attempts, and a new letter replaces the old one.
    expect(body.outcome.status).toBe('dead')
    expect(
      seen(t)
        .filter((s) => s.n === 1)
        .map((s) => s.attempt),
    ).toEqual([1, 2, 3, 1, 2, 3])
    const after = await t.gw.listDeadLetters({ function: 'rec' })
    expect(after.map((l) => l.id)).toEqual([body.outcome.deadLetterId])
  })
})

describe('mqtt PUBACKs across a reconnect', () => {
  it("never sends an earlier connection's PUBACK on a new one, and does not run redelivered messages again", async () => {
    const { tap, t, base, logAt } = await setup({ protocolVersion: 5, retry: '{ maxAttempts: 10, backoff: fixed, initialDelayMs: 200 }' })
    const bodies = Array.from({ length: 10 }, (_, n) => (n === 0 ? { n, failAttempts: 1000 } : { n }))
    await publish(broker.url, (i) => `${base}/k${i}`, bodies)
    await waitFor(() => t.gw.function('rec')?.counts.eventsDone === 9, 30_000, 'messages 1..9 done')
    // Message 0 is still failing, so every PUBACK waits; cut the connection now.
    expect(t.gw.function('rec')?.counts.eventsDead).toBe(0)
    expect(acks(tap, logAt)).toHaveLength(0)
    tap.dropAll()
    await waitFor(() => acks(tap, logAt).length === 10, 30_000, '10 PUBACKs')

    const sent = acks(tap, logAt)
    expect(sent.map((a) => a.n)).toEqual(bodies.map((b) => b.n))
    // All on the second connection, each answering a redelivery (DUP) received on it.
    expect(sent.every((a) => a.conn === 2)).toBe(true)
    const resent = tap.packets.filter((p) => p.conn === 2 && p.dir === 'toClient' && p.cmd === 'publish')
    expect(resent.length).toBeGreaterThanOrEqual(10)
    expect(resent.slice(0, 10).every((p) => p.dup)).toBe(true)
    // The redeliveries took over the outcomes of the first delivery: nothing ran twice.
    for (let n = 1; n < 10; n++) expect(seen(t).filter((s) => s.n === n)).toHaveLength(1)
    expect(seen(t).filter((s) => s.n === 0)).toHaveLength(10)
    expect(batches(t).flat().length).toBe(19)
  })
})

describe('mqtt back-pressure', () => {
  it("stops reading while the function's backlog is full, and loses nothing", async () => {
    const tap = await tapped()
    const connection = uid('c')
    const topic = `bp/${uid()}`
    // One slow instance and a small backlog bound: the router pauses the connector at 20 events.
    const slow = `export default async function (events, ctx) {
  const end = Date.now() + 10 * events.length
  while (Date.now() < end) {}
  for (const e of events) ctx.log.info('seen ' + JSON.stringify({ inv: ctx.invocationId, size: events.length, n: e.body.n, attempt: e.attempt }))
}`
    const t = await startGateway({
      yaml: `connections:\n  ${connection}: { kind: mqtt, url: "${tap.url}" }\nfunctions:\n  rec:\n    code: functions/slow.js\n    trigger: { mqtt: { connection: ${connection}, topic: "${topic}" } }\n    batch: { maxSize: 10, maxWaitMs: 5 }\n    scale: { max: 1 }\n    maxBacklog: 20\n`,
      files: { 'functions/slow.js': slow },
    })
    onTestFinished(() => t.stop())
    let peak = 0
    const watch = setInterval(() => (peak = Math.max(peak, t.gw.function('rec')?.backlog ?? 0)), 5)
    onTestFinished(() => clearInterval(watch))
    // The broker may send all 300 at once (max_inflight_messages 1000).
    await publish(
      broker.url,
      topic,
      Array.from({ length: 300 }, (_, n) => ({ n })),
    )
    await waitFor(() => t.gw.function('rec')?.counts.eventsDone === 300, 60_000, 'all 300 done')
    clearInterval(watch)
    expect(new Set(seen(t).map((s) => s.n)).size).toBe(300)
    // Without the pause the backlog would have held (nearly) all 300; with it, the bound plus one
    // group of events read in the same tick (64).
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(20 + 64)
    // Every message acknowledged, once, in order.
    await waitFor(() => acks(tap, new Map()).length === 300, 30_000, '300 PUBACKs')
    expect(acks(tap, new Map()).map((a) => a.n)).toEqual(Array.from({ length: 300 }, (_, n) => n))
  })
})

describe('mqtt graceful stop', () => {
  it('sends the PUBACKs that are due, then DISCONNECT; aborted messages stay at the broker', async () => {
    const tap = await tapped()
    const connection = uid('c')
    const topic = `stop/${uid()}`
    const dir = keptDir()
    const opts = {
      connections: `  ${connection}: { kind: mqtt, url: "${tap.url}" }`,
      trigger: `{ mqtt: { connection: ${connection}, topic: "${topic}" } }`,
      batch: '{ maxSize: 1, maxWaitMs: 0 }',
      extra: '    scale: { max: 1 }\n',
      dir,
    }
    const t1 = await recGateway(opts)
    // One topic, one instance, batches of one: 0 is done quickly, 1 runs for a while, 2..4 wait.
    await publish(broker.url, topic, [{ n: 0 }, { n: 1, sleepMs: 800 }, { n: 2 }, { n: 3 }, { n: 4 }])
    await waitFor(() => seen(t1).some((s) => s.n === 0) && t1.gw.function('rec')?.inflight === 1, 30_000, 'message 1 running')
    await t1.stop()
    // The tap may still be reading the last bytes of the closed connection.
    const disconnect = await waitFor(() => tap.packets.find((p) => p.conn === 1 && p.dir === 'toBroker' && p.cmd === 'disconnect'), 10_000, 'DISCONNECT')
    const sent = acks(tap, new Map()).filter((a) => a.conn === 1)
    // 0 was done, 1 finished during the stop: both acked; 2..4 were aborted: not acked.
    expect(sent.map((a) => a.n)).toEqual([0, 1])
    expect(seen(t1).map((s) => s.n)).toEqual([0, 1])
    expect(Math.max(...sent.map((a) => a.seq))).toBeLessThan(disconnect.seq)
    // The session kept 2..4: the next gateway gets them, and nothing else.
    const t2 = await recGateway(opts)
    await waitFor(() => seen(t2).length === 3, 30_000, 'the rest')
    expect(seen(t2).map((s) => s.n)).toEqual([2, 3, 4])
  })
})
