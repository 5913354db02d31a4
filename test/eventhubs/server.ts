/**
 * An Event Hubs endpoint for tests: a real AMQP 1.0 server (rhea) that @azure/event-hubs talks to
 * over plain TCP with `UseDevelopmentEmulator=true` in the connection string, so the SDK's consumer,
 * event processor and producer run for real.
 *
 * Covers: SASL ANONYMOUS and PLAIN; `$cbs` put-token (SAS tokens verified against the configured
 * keys); `$management` READ of hub properties (name, partition ids, created at) and partition
 * properties (begin/last sequence number, last offset, last enqueued time, empty); producer links
 * on `<hub>` (round robin, or a hash of the partition key) and `<hub>/Partitions/<id>`, batched
 * (format 0x80013700) and single messages, with x-opt-sequence-number, x-opt-offset (byte
 * positions), x-opt-enqueued-time and x-opt-partition-key; receiver links on
 * `<hub>/ConsumerGroups/<group>/Partitions/<id>` starting from the selector filter (offset,
 * sequence number, enqueued time; `>` and `>=`) with link-credit flow control and owner levels
 * (a higher or equal epoch disconnects the others with amqp:link:stolen; a lower one is refused).
 * Hubs and their logs live in memory and survive `stop()`/`start()` (a broker restart).
 *
 * Does not cover: TLS and AMQP over WebSockets, AAD (JWT) tokens, per-link authorization of the
 * put token's audience, consumer groups as entities (any name is accepted), the limit of five
 * receivers per partition and group, retention and truncation (begin sequence number stays 0),
 * the service's partition-key hash (events with one key do share a partition), geo-replication
 * (offsets are plain numbers), idempotent producers, receiver runtime metrics
 * (last-enqueued delivery annotations), message size limits beyond max-message-size, throttling
 * and server-busy errors.
 */
import type { Server, Socket } from 'node:net'
import rhea, { type Connection, type Container, type Delivery, type EventContext, type Message, type Receiver, type Sender } from 'rhea'
import { Consumers, type Consumer } from './consumers.js'
import { handleCbs, handleManagement, type NodeResponse, type SasKeys } from './management.js'
import { Hub, parseSelector, type PartitionLog } from './partition-log.js'

const { create_container, message: amqpMessage } = rhea

export interface EventHubsTestServerOptions {
  /** Hubs to create at once: name -> partition count. */
  hubs?: Record<string, number>
  /** SAS key names and keys (default `{ k: 'v' }`, what `connectionString` uses). */
  keys?: SasKeys
}

const BATCH_FORMAT = 0x80013700
const MAX_MESSAGE_SIZE = 1024 * 1024
const SELECTOR_FILTER = 'apache.org:selector-filter:string'

export class EventHubsTestServer {
  readonly hubs = new Map<string, Hub>()
  readonly consumers = new Consumers()
  readonly keys: SasKeys
  port = 0
  private container: Container
  private listener: Server | undefined
  private readonly sockets = new Set<Socket>()
  /** Per connection: reply-to address -> the link responses go out on. */
  private readonly replyLinks = new Map<Connection, Map<string, Sender>>()
  private readonly held = new Set<string>()
  private readonly heldDeliveries: Array<{ hub: string; delivery: Delivery }> = []

  constructor(opts: EventHubsTestServerOptions = {}) {
    this.keys = opts.keys ?? { k: 'v' }
    for (const [name, n] of Object.entries(opts.hubs ?? {})) this.createHub(name, n)
    this.container = this.newContainer()
  }

  /** Creates (or returns) a hub with `partitions` partitions. */
  createHub(name: string, partitions = 4): Hub {
    let hub = this.hubs.get(name)
    if (!hub) {
      hub = new Hub(name, partitions)
      this.hubs.set(name, hub)
    }
    return hub
  }

  /** Connection string for `hub` with the first configured key. */
  connectionString(hub?: string): string {
    const [name, key] = Object.entries(this.keys)[0] ?? ['k', 'v']
    return `Endpoint=sb://127.0.0.1:${this.port}/;SharedAccessKeyName=${name};SharedAccessKey=${key}${hub ? `;EntityPath=${hub}` : ''};UseDevelopmentEmulator=true`
  }

  /** Starts listening (on the previous port after a stop, so clients reconnect to it). */
  async start(): Promise<void> {
    if (this.listener) return
    this.container = this.newContainer()
    const listener = this.container.listen({ port: this.port, host: '127.0.0.1' })
    listener.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.once('close', () => this.sockets.delete(s))
    })
    await new Promise<void>((resolve, reject) => {
      listener.once('listening', resolve)
      listener.once('error', reject)
    })
    const addr = listener.address()
    if (addr && typeof addr === 'object') this.port = addr.port
    this.listener = listener
  }

  /** Drops every connection and stops listening, as a broker that goes down. Logs are kept. */
  async stop(): Promise<void> {
    const listener = this.listener
    if (!listener) return
    this.listener = undefined
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    this.consumers.clear()
    this.replyLinks.clear()
    this.heldDeliveries.length = 0
    await new Promise<void>((r) => listener.close(() => r()))
  }

  async restart(): Promise<void> {
    await this.stop()
    await this.start()
  }

  /** Messages sent to `hub` are stored but not acknowledged until `release(hub)`. */
  hold(hub: string): void {
    this.held.add(hub)
  }

  release(hub: string): void {
    this.held.delete(hub)
    for (let i = this.heldDeliveries.length - 1; i >= 0; i--) {
      const h = this.heldDeliveries[i]
      if (h?.hub !== hub) continue
      this.heldDeliveries.splice(i, 1)
      h.delivery.accept()
    }
  }

  /** How many sends to `hub` wait for `release`. */
  heldCount(hub: string): number {
    return this.heldDeliveries.filter((h) => h.hub === hub).length
  }

  /** Appends events directly (no AMQP), e.g. to pre-fill partitions for a benchmark. */
  append(hub: string, partitionId: string, bodies: unknown[]): void {
    const log = this.hubs.get(hub)?.partition(partitionId)
    if (!log) throw new Error(`no partition ${partitionId} in hub ${hub}`)
    for (const b of bodies) log.append({ body: amqpMessage.data_section(Buffer.from(typeof b === 'string' ? b : JSON.stringify(b))) }, undefined)
    this.deliverNew(log)
  }

  /** Bodies of a partition's events, decoded (tests). */
  bodies(hub: string, partitionId?: string): unknown[] {
    const h = this.hubs.get(hub)
    if (!h) return []
    const logs = partitionId === undefined ? h.partitions : [h.partition(partitionId)].filter((x): x is PartitionLog => x !== undefined)
    return logs.flatMap((l) =>
      l.events.map((e) => {
        const body = amqpMessage.decode(e.encoded).body as unknown
        const content = isSection(body) ? body.content : body
        const text = Buffer.isBuffer(content) ? content.toString('utf8') : content
        try {
          return typeof text === 'string' ? (JSON.parse(text) as unknown) : text
        } catch {
          return text
        }
      }),
    )
  }

  private newContainer(): Container {
    const c = create_container({ id: 'eventhubs-test-server', autoaccept: false } as never)
    c.sasl_server_mechanisms.enable_anonymous()
    c.sasl_server_mechanisms.enable_plain(() => true)
    c.on('receiver_open', (ctx: EventContext) => this.onReceiverOpen(ctx))
    c.on('sender_open', (ctx: EventContext) => this.onSenderOpen(ctx))
    c.on('message', (ctx: EventContext) => this.onMessage(ctx))
    c.on('sendable', (ctx: EventContext) => {
      const consumer = ctx.sender && this.consumers.get(ctx.sender)
      if (consumer) this.consumers.pump(consumer)
    })
    const forget = (ctx: EventContext) => {
      if (ctx.sender) this.consumers.remove(ctx.sender)
    }
    c.on('sender_close', forget)
    c.on('sender_error', forget)
    const dropConnection = (ctx: EventContext) => {
      for (const s of this.replyLinks.get(ctx.connection)?.values() ?? []) this.consumers.remove(s)
      this.replyLinks.delete(ctx.connection)
      for (const c2 of [...this.allConsumers()]) if (c2.sender.connection === ctx.connection) this.consumers.remove(c2.sender)
    }
    c.on('disconnected', dropConnection)
    c.on('connection_close', dropConnection)
    c.on('error', () => undefined)
    return c
  }

  private *allConsumers(): Iterable<Consumer> {
    for (const hub of this.hubs.values()) for (const p of hub.partitions) yield* this.consumers.ofPartition(p)
  }

  /** The client opened a sending link: a producer, or the request side of $cbs/$management. */
  private onReceiverOpen(ctx: EventContext): void {
    const r = ctx.receiver as Receiver
    const address = (r.target as { address?: string } | undefined)?.address ?? ''
    r.set_target({ address })
    ;(r as unknown as { local: { attach: { max_message_size: number } } }).local.attach.max_message_size = MAX_MESSAGE_SIZE
    if (address === '$cbs' || address.endsWith('$management')) return
    const target = this.producerTarget(address)
    if (!target) r.close({ condition: 'amqp:not-found', description: `The messaging entity '${address}' could not be found.` })
  }

  /** The client opened a receiving link: a partition receiver, or the reply side of a request node. */
  private onSenderOpen(ctx: EventContext): void {
    const s = ctx.sender as Sender
    const source = (s.source ?? {}) as { address?: string; filter?: Record<string, unknown> }
    const address = source.address ?? ''
    s.set_source({ address, ...(source.filter ? { filter: source.filter } : {}) } as never)
    s.set_target((s.target ?? {}) as never)
    if (address === '$cbs' || address.endsWith('$management')) {
      // Responses go to the request's reply-to: the link's target address, or its name ($cbs).
      const links = this.replyLinks.get(ctx.connection) ?? new Map<string, Sender>()
      links.set(s.name, s)
      const replyTo = (s.target as { address?: string } | undefined)?.address
      if (replyTo) links.set(replyTo, s)
      this.replyLinks.set(ctx.connection, links)
      return
    }
    const m = /^([^/]+)\/ConsumerGroups\/([^/]+)\/Partitions\/([^/]+)$/i.exec(address)
    const log = m ? this.hubs.get(m[1] as string)?.partition(m[3] as string) : undefined
    if (!m || !log) {
      s.close({ condition: 'amqp:not-found', description: `The messaging entity '${address}' could not be found.` })
      return
    }
    const selector = selectorOf(source.filter)
    const pos = selector === undefined ? { kind: 'offset' as const, value: 'latest' as const, inclusive: false } : parseSelector(selector)
    if (!pos) {
      s.close({ condition: 'amqp:invalid-field', description: `cannot parse the selector filter ${JSON.stringify(selector)}` })
      return
    }
    const rawEpoch = (s.properties as Record<string, unknown> | undefined)?.['com.microsoft:epoch']
    const epoch = typeof rawEpoch === 'number' ? rawEpoch : undefined
    ;(s as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1
    const consumer: Consumer = { sender: s, log, group: m[2] as string, epoch, next: log.indexOf(pos), queued: [] }
    const refused = this.consumers.add(consumer)
    if (refused) {
      s.close(refused)
      return
    }
    this.consumers.pump(consumer)
  }

  private producerTarget(address: string): { hub: Hub; partition?: PartitionLog } | undefined {
    const m = /^([^/]+)(?:\/Partitions\/([^/]+))?$/i.exec(address)
    const hub = m ? this.hubs.get(m[1] as string) : undefined
    if (!m || !hub) return undefined
    if (m[2] === undefined) return { hub }
    const partition = hub.partition(m[2])
    return partition ? { hub, partition } : undefined
  }

  private onMessage(ctx: EventContext): void {
    const r = ctx.receiver as Receiver
    const delivery = ctx.delivery as Delivery
    const address = (r.target as { address?: string } | undefined)?.address ?? ''
    if (address === '$cbs' || address.endsWith('$management')) {
      const req = ctx.message as Message
      delivery.accept()
      const res = address === '$cbs' ? handleCbs(req, this.keys) : handleManagement(req, this.hubs)
      this.reply(ctx.connection, req, res)
      return
    }
    const target = this.producerTarget(address)
    if (!target) {
      delivery.reject({ condition: 'amqp:not-found', description: `no entity ${address}` })
      return
    }
    const format = (ctx as { format?: number }).format
    let messages: Message[]
    let envelope: Message
    try {
      envelope = format === BATCH_FORMAT ? (amqpMessage.decode(ctx.message as unknown as Buffer) as unknown as Message) : (ctx.message as Message)
      messages = format === BATCH_FORMAT ? unbatch(envelope) : [envelope]
    } catch (e) {
      delivery.reject({ condition: 'amqp:decode-error', description: (e as Error).message })
      return
    }
    const key = envelope.message_annotations?.['x-opt-partition-key'] as string | undefined
    const log = target.partition ?? (key !== undefined ? target.hub.partitionForKey(key) : target.hub.nextPartition())
    for (const msg of messages) log.append(msg, (msg.message_annotations?.['x-opt-partition-key'] as string | undefined) ?? key)
    this.deliverNew(log)
    if (this.held.has(target.hub.name)) this.heldDeliveries.push({ hub: target.hub.name, delivery })
    else delivery.accept()
  }

  private deliverNew(log: PartitionLog): void {
    for (const c of this.consumers.ofPartition(log)) this.consumers.pump(c)
  }

  private reply(connection: Connection, req: Message, res: NodeResponse): void {
    const replyTo = req.reply_to
    const link = replyTo ? this.replyLinks.get(connection)?.get(replyTo) : undefined
    if (!link) return
    link.send({
      correlation_id: req.message_id,
      application_properties: {
        'status-code': res.status,
        'status-description': res.description,
        ...(res.condition ? { 'error-condition': res.condition } : {}),
      },
      body: res.body ?? null,
    })
  }
}

interface Section {
  typecode: number
  content: unknown
  multiple?: boolean
}

function isSection(x: unknown): x is Section {
  return typeof x === 'object' && x !== null && 'typecode' in x && 'content' in x
}

/** The events in a batch envelope: each data section holds one encoded message. */
function unbatch(envelope: Message): Message[] {
  const body = envelope.body as unknown
  if (!isSection(body) || body.typecode !== 0x75) throw new Error('a batch message must carry its events as data sections')
  const parts = body.multiple ? (body.content as Buffer[]) : [body.content as Buffer]
  return parts.map((p) => amqpMessage.decode(p) as unknown as Message)
}

function selectorOf(filter: Record<string, unknown> | undefined): string | undefined {
  const f = filter?.[SELECTOR_FILTER]
  if (f === undefined) return undefined
  if (typeof f === 'string') return f
  // A described value (descriptor 0x468c00000004) that rhea may leave wrapped.
  const v = (f as { value?: unknown }).value
  if (typeof v === 'string') return v
  if (typeof v === 'object' && v !== null && typeof (v as { value?: unknown }).value === 'string') return (v as { value: string }).value
  return undefined
}
