/**
 * MQTT fault tests with a ledger (see ledger.ts): a publisher streams ids (QoS 1) to a Mosquitto of
 * the test's own (persistence on, max_queued_messages 100000: sessions survive), the gateway runs
 * as its own process (`sluice start`) with a persistent-session trigger under a fixed client id and
 * a function that writes each processed id to an MQTT output; a subscriber on a persistent session
 * collects those. Faults: the gateway killed with SIGKILL several times (each restart resumes a
 * session with a backlog larger than the window), the broker restarted (SIGTERM, so it writes its
 * persistence file), a worker host killed while batches run.
 *
 * Pass: every id the publisher had confirmed was processed (is in the ledger) or dead-lettered,
 * and the function's extra runs are at most faults x the in-flight window (`maxInflight`, the
 * most messages the trigger holds without a PUBACK: what a crash can leave unacknowledged).
 */
import { describe, expect, it } from 'vitest'
import { GatewayProcess } from '../../helpers/gateway-process.js'
import { projectDir, waitFor } from '../../helpers/gateway.js'
import { startMosquitto, type Mosquitto } from './broker.js'
import { uid } from './helpers.js'
import { admin, cleanupStack, deadLetterIds, LedgerSubscriber, ledgerFunction, ledgerReport, StreamPublisher, type LedgerReport } from './ledger.js'

/** The trigger's maxInflight: the in-flight window that bounds duplicates per fault. */
const WINDOW = 200
/** The function's batch.maxSize: the PUBACKs of one batch go out in one write. */
const BATCH = 50
/**
 * Ids one killed process ran that the next one runs again: its unacknowledged window, plus the
 * PUBACKs it wrote that the broker had not read yet. A killed process's socket closes with unread
 * data, so the kernel resets the connection, and Mosquitto drops a reset client without reading
 * what it had received (its write to the client fails first): those messages come again. On this
 * 2-core machine that was up to 16 past the window (216 once in ~10 runs); two batches' PUBACKs
 * leave room for a broker a few milliseconds behind, and a connector that ignored its window
 * would pass 300 at once (a resumed session's backlog here is 3 windows).
 */
const PER_KILL = WINDOW + 2 * BATCH
/** Ids the publisher sends at least (it goes on while faults are still to come). */
const MIN_IDS = 5000
const MAX_IDS = 60_000
const TOPICS = 8
/** Ledger ids a gateway must add before the next fault: the fault then hits a working gateway. */
const PROGRESS = 300
const FN = 'ledger'
/** Ids published while the killed gateway is down, before it starts again (more than a window). */
const BACKLOG = 3 * WINDOW
const LONG = 240_000

interface FunctionInfo {
  backlog: number
  inflight: number
}
interface HostInfo {
  id: number
  up: boolean
  pid: number | undefined
  instances: number
  restarts: number
}

async function setup(opts: { hosts: number; spinMs: number }) {
  const cleanup = cleanupStack()
  const broker: Mosquitto = await startMosquitto()
  cleanup(() => broker.close())
  const base = `faults/${uid()}`
  const ledgerTopic = `ledger/${uid()}`
  const project = projectDir({
    'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: ${opts.hosts}, prewarm: 1 }
store: { path: state.db }
connections:
  bus: { kind: mqtt, url: "${broker.url}", reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }
functions:
  ${FN}:
    code: functions/ledger.js
    trigger: { mqtt: { connection: bus, topic: "${base}/+", qos: 1, clientId: ${uid('sluice-faults')}, maxInflight: ${WINDOW} } }
    batch: { maxSize: ${BATCH}, maxWaitMs: 10 }
    retry: { maxAttempts: 10, backoff: exponential, initialDelayMs: 100, maxDelayMs: 2000 }
    timeoutMs: 30000
    scale: { max: 4 }
    outputs:
      ledger: { mqtt: { connection: bus, topic: "${ledgerTopic}", qos: 1, timeoutMs: 60000 } }
`,
    'functions/ledger.js': ledgerFunction(opts.spinMs),
  })
  cleanup(project.cleanup)
  const gp = new GatewayProcess(project.dir)
  cleanup(() => gp.kill())
  const ledger = await LedgerSubscriber.open(broker.url, ledgerTopic)
  cleanup(() => ledger.close())
  const pub = new StreamPublisher({ url: broker.url, topicOf: (id) => `${base}/k${id % TOPICS}`, min: MIN_IDS, max: MAX_IDS, tick: 20, pauseMs: 20 })
  cleanup(() => pub.close())
  return { broker, gp, ledger, pub }
}

/** Waits until the ledger holds `PROGRESS` more ids than `from`, i.e. the gateway works. */
async function progress(ledger: LedgerSubscriber, from: number, what: string): Promise<void> {
  await waitFor(() => ledger.size >= from + PROGRESS, LONG, `${PROGRESS} more ledger ids (${what})`)
}

/** Polls `check` every `everyMs` until it is true (resolves true) or `timeoutMs` passed (false). */
async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/**
 * Ends the stream, waits until every confirmed id is in the ledger or dead-lettered and the
 * function is idle, stops the gateway (SIGTERM: exit 0) and returns the ledger report.
 */
async function drain(s: { gp: GatewayProcess; pub: StreamPublisher; ledger: LedgerSubscriber }): Promise<LedgerReport> {
  const { gp, pub, ledger } = s
  await pub.finish()
  let dead: number[] = []
  // No throw on timeout: the assertions on the report name what is missing.
  await until(
    async () => {
      const missing = [...pub.confirmed].filter((id) => !ledger.has(id))
      if (missing.length === 0) return true
      dead = await deadLetterIds(gp.url, FN)
      const deadSet = new Set(dead)
      return missing.every((id) => deadSet.has(id))
    },
    300_000,
    250,
  )
  await waitFor(
    async () => {
      const f = await admin<FunctionInfo>(gp.url, `/admin/functions/${FN}`)
      return f.backlog === 0 && f.inflight === 0
    },
    LONG,
    'the function idle',
  )
  dead = await deadLetterIds(gp.url, FN)
  // SIGTERM drains and exits 0; a gateway that hangs is killed by the cleanup.
  const exit = await Promise.race([gp.stop(), new Promise((r) => setTimeout(() => r('no exit'), LONG))])
  expect.soft(exit, 'exit code of the gateway on SIGTERM').toBe(0)
  return ledgerReport(pub, ledger, dead)
}

/** `perFault`: the extra runs one fault may cause (a window, or PER_KILL for a kill -9). */
function checkLedger(r: LedgerReport, faults: number, what: string, perFault = WINDOW): void {
  const bound = faults * perFault
  console.log(`mqtt faults (${what}): ${JSON.stringify({ ...r, missing: r.missing.length, unknown: r.unknown.length, faults, bound })}`)
  expect.soft(r.confirmed).toBeGreaterThanOrEqual(MIN_IDS / 2)
  expect.soft(r.missing, `confirmed ids neither processed nor dead-lettered (of ${r.confirmed})`).toEqual([])
  expect.soft(r.unknown, 'ledger ids never published').toEqual([])
  expect.soft(r.extraRuns, `extra function runs after ${faults} faults (in-flight window ${WINDOW})`).toBeLessThanOrEqual(bound)
}

const crashedRuns = (gp: GatewayProcess) =>
  gp.lines.filter((l) => l.msg === 'invocation failed' && (l.err as { code?: string } | undefined)?.code === 'SLUICE_ERR_FUNCTION_CRASHED').length

describe('mqtt trigger faults, checked against a ledger', () => {
  it('loses no confirmed message when the gateway is killed with SIGKILL mid-stream, again and again', async () => {
    const KILLS = 4
    const s = await setup({ hosts: 1, spinMs: 2 })
    const { gp, pub, ledger } = s
    await gp.start(LONG)
    pub.start()
    const atKill: Array<{ published: number; processed: number; extraRuns: number; publisherDone: boolean }> = []
    for (let i = 0; i < KILLS; i++) {
      if (i > 0) {
        // A backlog larger than the window waits in the session: the next run starts with a
        // resumed session's burst (Mosquitto 2.0.11 sends all of it; maxInflight holds the reading).
        const mark = pub.published
        await waitFor(() => pub.published >= mark + BACKLOG || pub.done, LONG, 'a backlog while the gateway is down')
        await gp.start(LONG)
      }
      await progress(ledger, ledger.size, `gateway run ${i + 1}`)
      atKill.push({ published: pub.published, processed: ledger.size, extraRuns: ledger.extraRuns(), publisherDone: pub.done })
      await gp.kill()
    }
    await gp.start(LONG)
    // The last run must take up where the killed one stopped (the session kept the rest).
    await progress(ledger, ledger.size, 'after the last kill')
    const r = await drain(s)
    console.log(`mqtt faults (gateway kills): at each kill ${JSON.stringify(atKill)}`)

    // Every kill came mid-stream: the publisher was still sending.
    expect.soft(atKill.map((k) => k.publisherDone)).toEqual(Array.from({ length: KILLS }, () => false))
    expect.soft(gp.starts).toBe(KILLS + 1)
    // The broker stayed up: every publish was confirmed.
    expect.soft(pub.unconfirmed).toBe(0)
    expect.soft(r.confirmed).toBe(r.published)
    expect.soft(ledger.sessionLost).toBe(0)
    checkLedger(r, KILLS, 'gateway kills', PER_KILL)
    // Per kill, too: the ids a killed process ran and the next one ran again fit in one window
    // (and the PUBACKs the reset connection lost: PER_KILL), and only killed processes left such ids.
    const perKill = Object.values(r.extraRunsByBoot)
    expect.soft(perKill.length).toBeLessThanOrEqual(KILLS)
    for (const n of perKill) expect.soft(n).toBeLessThanOrEqual(PER_KILL)
  }, 900_000)

  it('loses no confirmed message when the broker restarts mid-stream', async () => {
    const RESTARTS = 2
    const s = await setup({ hosts: 1, spinMs: 2 })
    const { broker, gp, pub, ledger } = s
    await gp.start(LONG)
    pub.start()
    const atRestart: Array<{ published: number; processed: number; publisherDone: boolean }> = []
    for (let i = 0; i < RESTARTS; i++) {
      await progress(ledger, ledger.size, `before broker restart ${i + 1}`)
      atRestart.push({ published: pub.published, processed: ledger.size, publisherDone: pub.done })
      await broker.restart()
    }
    await progress(ledger, ledger.size, 'after the last broker restart')
    const lost = gp.lines.filter((l) => l.msg === 'mqtt connection lost; reconnecting').length
    const noSession = gp.lines.filter((l) => String(l.msg).startsWith('the broker had no session')).length
    const r = await drain(s)

    expect.soft(atRestart.map((k) => k.publisherDone)).toEqual(Array.from({ length: RESTARTS }, () => false))
    // Each restart cut the trigger's connection; the session survived each one.
    expect.soft(lost).toBeGreaterThanOrEqual(RESTARTS)
    expect.soft(noSession).toBe(0)
    expect.soft(ledger.sessionLost).toBe(0)
    // The publisher reconnected after each restart and kept publishing.
    expect.soft(pub.connections).toBeGreaterThanOrEqual(RESTARTS + 1)
    const lastRestart = atRestart[RESTARTS - 1]?.published ?? Infinity
    expect.soft([...pub.confirmed].filter((id) => id >= lastRestart).length).toBeGreaterThan(0)
    checkLedger(r, RESTARTS, 'broker restarts')
  }, 900_000)

  it('loses no confirmed message when a worker host is killed mid-batch, and the host comes back', async () => {
    // Two hosts; 100 ms of work per batch keeps batches running most of the time.
    const s = await setup({ hosts: 2, spinMs: 100 })
    const { gp, pub, ledger } = s
    await gp.start(LONG)
    pub.start()
    const kills: Array<{ host: number; pid: number; publisherDone: boolean }> = []
    // A kill between two batches of that host hits nothing: kill again until one ran (at most 5).
    while (crashedRuns(gp) === 0 && kills.length < 5) {
      await progress(ledger, ledger.size, `before host kill ${kills.length + 1}`)
      const victim = await waitFor(
        async () => {
          const f = await admin<FunctionInfo>(gp.url, `/admin/functions/${FN}`)
          if (f.inflight === 0) return undefined
          const { hosts } = await admin<{ hosts: HostInfo[] }>(gp.url, '/admin/hosts')
          return hosts.find((h) => h.up && h.instances > 0 && h.pid !== undefined)
        },
        LONG,
        'a worker host with instances while batches run',
      )
      const pid = victim.pid as number
      process.kill(pid, 'SIGKILL')
      kills.push({ host: victim.id, pid, publisherDone: pub.done })
      const back = await waitFor(
        async () => {
          const { hosts } = await admin<{ hosts: HostInfo[] }>(gp.url, '/admin/hosts')
          return hosts.find((h) => h.id === victim.id && h.up && h.pid !== undefined && h.pid !== pid && h.restarts > victim.restarts)
        },
        LONG,
        `worker host ${victim.id} back`,
      )
      expect(back.restarts).toBeGreaterThan(0)
    }
    const crashed = crashedRuns(gp)
    await progress(ledger, ledger.size, 'after the host kill')
    const r = await drain(s)
    console.log(`mqtt faults (host kills): ${JSON.stringify({ kills, crashedRuns: crashed })}`)

    checkLedger(r, kills.length, 'worker host kills')
    // At least one kill hit running batches, which failed with the crash and ran again.
    expect.soft(crashed).toBeGreaterThan(0)
    expect.soft(kills.every((k) => !k.publisherDone)).toBe(true)
    expect.soft(pub.unconfirmed).toBe(0)
    expect.soft(r.confirmed).toBe(r.published)
    expect.soft(gp.lines.filter((l) => l.msg === 'worker host exited; restarting').length).toBeGreaterThanOrEqual(kills.length)
  }, 900_000)
})
