/**
 * The ledger of the MQTT fault tests (faults.test.ts).
 *
 * - A `StreamPublisher` publishes `{ id }` messages (QoS 1) and records the ids whose PUBACK came
 *   back (confirmed). It never resends: a publish cut off by a lost connection stays unconfirmed,
 *   so every duplicate the gateway's function sees comes from the gateway side, not the source.
 * - The gateway's function (`ledgerFunction`) writes `{ id, inv, ev }` per event (`inv`: the
 *   invocation; `ev`: the event id, which names the gateway process that received it) to an MQTT
 *   output (QoS 1, confirmed before the input's PUBACK), so the record survives a kill -9.
 * - A `LedgerSubscriber` (persistent session, QoS 1) collects those records. A record delivered
 *   twice to the subscriber (its own session's redelivery) has the same `inv`; a second run of the
 *   function for an id has another: `extraRuns` counts only the latter.
 * - `deadLetterIds` reads the gateway's dead letters (GET /admin/dead-letters).
 */
import { connect, connectAsync, type MqttClient } from 'mqtt'
import { onTestFinished } from 'vitest'
import { uid } from './helpers.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The function under test: after `spinMs` of busy work per batch, one ledger record per event. */
export function ledgerFunction(spinMs: number): string {
  return `
export default async function (events, ctx) {
  const end = Date.now() + ${spinMs}
  while (Date.now() < end) {}
  for (const e of events) ctx.output('ledger', { id: e.body.id, inv: ctx.invocationId, ev: e.id })
}`
}

/**
 * Registers cleanup steps that run in reverse order when the test ends (failed or not); each runs
 * even when an earlier one throws.
 */
export function cleanupStack(): (step: () => unknown) => void {
  const steps: Array<() => unknown> = []
  onTestFinished(async () => {
    const errors: unknown[] = []
    for (const s of steps.splice(0).reverse()) {
      try {
        await s()
      } catch (e) {
        errors.push(e)
      }
    }
    if (errors.length) throw errors[0]
  })
  return (step) => steps.push(step)
}

/**
 * Publishes ids 0, 1, 2, ... (`tick` at a time, `pauseMs` apart) to `topicOf(id)` with QoS 1 until
 * `finish()` was called and at least `min` ids went out, or `max` ids went out. Reconnects (a new
 * clean client) whenever the connection is lost.
 */
export class StreamPublisher {
  readonly confirmed = new Set<number>()
  /** Ids handed to a connected client (the next id to publish). */
  published = 0
  unconfirmed = 0
  connections = 0
  /** True once the last id went out. */
  done = false
  private finishing = false
  private aborted = false
  private client: MqttClient | undefined
  private loop: Promise<void> | undefined

  constructor(private readonly opts: { url: string; topicOf: (id: number) => string; min: number; max: number; tick: number; pauseMs: number }) {}

  start(): void {
    this.loop = this.run()
    // Seen by finish()/close(); not unhandled meanwhile.
    this.loop.catch(() => undefined)
  }

  /** Publishes on until `min` ids went out, then resolves. */
  async finish(): Promise<void> {
    this.finishing = true
    await this.loop
  }

  async close(): Promise<void> {
    this.aborted = true
    await this.loop?.catch(() => undefined)
    this.client?.end(true)
  }

  private async connected(): Promise<MqttClient> {
    for (;;) {
      if (this.aborted) throw new Error('publisher closed')
      if (this.client?.connected) return this.client
      this.client?.end(true)
      this.client = undefined
      try {
        const c = await connectAsync(this.opts.url, { protocolVersion: 5, clean: true, reconnectPeriod: 0, connectTimeout: 5000, clientId: uid('pub') })
        c.on('error', () => undefined)
        // Unconfirmed publishes fail now (reconnectPeriod 0 + clean: end(true) flushes them with
        // an error) instead of being resent on a later connection.
        c.on('close', () => c.end(true))
        this.client = c
        this.connections++
        return c
      } catch {
        await sleep(100)
      }
    }
  }

  private async run(): Promise<void> {
    const { topicOf, min, max, tick, pauseMs } = this.opts
    while (this.published < max && !(this.finishing && this.published >= min)) {
      const c = await this.connected()
      const from = this.published
      this.published = Math.min(max, from + tick)
      const sends: Array<Promise<void>> = []
      for (let id = from; id < this.published; id++) {
        sends.push(
          c.publishAsync(topicOf(id), JSON.stringify({ id }), { qos: 1 }).then(
            () => void this.confirmed.add(id),
            () => void this.unconfirmed++,
          ),
        )
      }
      await Promise.all(sends)
      await sleep(pauseMs)
    }
    this.done = true
    const c = this.client
    this.client = undefined
    if (c?.connected) await c.endAsync()
    else c?.end(true)
  }
}

/** Collects the `{ id, inv, ev }` ledger records from `topic` on a persistent session (QoS 1). */
export class LedgerSubscriber {
  /** Every record received, in order (redeliveries to this subscriber included). */
  readonly records: Array<{ id: number; inv: string; ev: string }> = []
  /** Connections on which the broker had no session for the subscriber (should stay 0). */
  sessionLost = 0
  private readonly byId = new Map<number, Set<string>>()

  private constructor(private readonly client: MqttClient) {}

  /** Resolves once subscribed. */
  static async open(url: string, topic: string): Promise<LedgerSubscriber> {
    const clientId = uid('ledger')
    const client = connect(url, {
      clientId,
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
      reconnectPeriod: 100,
      connectTimeout: 5000,
      resubscribe: false,
    })
    client.on('error', () => undefined)
    const l = new LedgerSubscriber(client)
    let first = true
    const subscribed = new Promise<void>((resolve, reject) => {
      client.on('connect', (connack) => {
        if (connack.sessionPresent && !first) return
        if (!first) l.sessionLost++
        first = false
        client.subscribe(topic, { qos: 1 }, (err) => (err ? reject(err) : resolve()))
      })
    })
    client.on('message', (_t, payload) => {
      const r = JSON.parse(payload.toString()) as { id: number; inv: string; ev: string }
      l.records.push(r)
      let runs = l.byId.get(r.id)
      if (!runs) l.byId.set(r.id, (runs = new Set()))
      runs.add(r.inv)
    })
    await subscribed
    return l
  }

  /** Ids with at least one record. */
  has(id: number): boolean {
    return this.byId.has(id)
  }

  get size(): number {
    return this.byId.size
  }

  /** Function runs beyond the first, over all ids (each distinct `inv` of an id is one run). */
  extraRuns(): number {
    let n = 0
    for (const runs of this.byId.values()) n += runs.size - 1
    return n
  }

  /** Ids the function ran more than once. */
  duplicatedIds(): number {
    let n = 0
    for (const runs of this.byId.values()) if (runs.size > 1) n++
    return n
  }

  /**
   * Extra runs by the gateway process that ran the id before (from the event id, which ends in
   * `<connector start time, base 36>.<counter>`): after a kill, that is the process killed, so
   * these are the duplicates each kill caused. A process that ran an id again itself (a retry
   * after a failed attempt, not a crash) does not count here; `extraRuns` counts every run.
   */
  extraRunsByBoot(): Map<string, number> {
    const runs = new Map<number, Array<{ boot: number; inv: string }>>()
    for (const r of this.records) {
      const boot = parseInt(r.ev.slice(r.ev.lastIndexOf('-') + 1, r.ev.lastIndexOf('.')), 36)
      const list = runs.get(r.id) ?? []
      if (!list.some((x) => x.inv === r.inv)) list.push({ boot, inv: r.inv })
      runs.set(r.id, list)
    }
    const out = new Map<string, number>()
    for (const list of runs.values()) {
      list.sort((a, b) => a.boot - b.boot)
      for (let i = 1; i < list.length; i++) {
        const before = (list[i - 1] as { boot: number }).boot
        if ((list[i] as { boot: number }).boot === before) continue
        const key = new Date(before).toISOString()
        out.set(key, (out.get(key) ?? 0) + 1)
      }
    }
    return out
  }

  ids(): number[] {
    return [...this.byId.keys()]
  }

  async close(): Promise<void> {
    await this.client.endAsync(true)
  }
}

/** Ids (`event.body.id`) of every dead letter of `fn` at the gateway on `url`. */
export async function deadLetterIds(url: string, fn: string): Promise<number[]> {
  const ids: number[] = []
  let after: string | undefined
  for (;;) {
    const res = await fetch(`${url}/admin/dead-letters?function=${fn}&limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`)
    if (!res.ok) throw new Error(`GET /admin/dead-letters answered ${res.status}: ${await res.text()}`)
    const page = (await res.json()) as { items: Array<{ event: { body: { id: number } } }>; next?: string }
    for (const d of page.items) ids.push(d.event.body.id)
    if (!page.next) return ids
    after = page.next
  }
}

/** GET <url><path> as JSON (the admin API answers on loopback without a key). */
export async function admin<T>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`)
  if (!res.ok) throw new Error(`GET ${path} answered ${res.status}: ${await res.text()}`)
  return (await res.json()) as T
}

export interface LedgerReport {
  published: number
  confirmed: number
  unconfirmed: number
  /** Distinct ids in the ledger. */
  processed: number
  deadLettered: number
  /** Confirmed ids neither in the ledger nor dead-lettered. */
  missing: number[]
  /** Ledger ids that were never published (must be none). */
  unknown: number[]
  extraRuns: number
  /** Extra runs by the gateway process (its start time) that had run the id before. */
  extraRunsByBoot: Record<string, number>
  duplicatedIds: number
  /** Records the subscriber received more than once (its own session's redeliveries). */
  ledgerRedeliveries: number
}

export function ledgerReport(pub: StreamPublisher, ledger: LedgerSubscriber, dead: number[]): LedgerReport {
  const deadSet = new Set(dead)
  const missing = [...pub.confirmed].filter((id) => !ledger.has(id) && !deadSet.has(id)).sort((a, b) => a - b)
  const unknown = ledger.ids().filter((id) => !(Number.isInteger(id) && id >= 0 && id < pub.published))
  const distinctRecords = new Set(ledger.records.map((r) => `${r.id}/${r.inv}`)).size
  return {
    published: pub.published,
    confirmed: pub.confirmed.size,
    unconfirmed: pub.unconfirmed,
    processed: ledger.size,
    deadLettered: deadSet.size,
    missing,
    unknown,
    extraRuns: ledger.extraRuns(),
    extraRunsByBoot: Object.fromEntries(ledger.extraRunsByBoot()),
    duplicatedIds: ledger.duplicatedIds(),
    ledgerRedeliveries: ledger.records.length - distinctRecords,
  }
}
