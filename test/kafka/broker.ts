/**
 * A small Kafka broker for tests: a TCP server that speaks the real Kafka wire protocol to the
 * real client (kafkajs 2.2.4), because no Kafka server can be installed here.
 *
 * Covers: one node (id 0) that leads every partition and coordinates every group; in-memory
 * topics with N partitions (created with `createTopic`, or on Metadata/Produce when
 * auto-creation is on); record batches (magic 2) stored as produced, with offsets assigned on
 * append; Produce v3 with acks 0/1/-1 (all the same here: there are no replicas); Fetch v4 with
 * maxWaitTime/minBytes long polling and per-partition/total maxBytes; ListOffsets v2
 * (earliest, latest, by timestamp per batch); Metadata v4; FindCoordinator v1; the classic
 * consumer-group protocol (JoinGroup v2, SyncGroup v1, Heartbeat v1, LeaveGroup v1) with
 * generations, rebalance on join/leave/session expiry and REBALANCE_IN_PROGRESS on heartbeats;
 * OffsetCommit v3 with Kafka's generation and member checks; OffsetFetch v3; ApiVersions v0-v2.
 * Requests on one connection are answered one at a time, in order, as Kafka does. `restart()`
 * closes every connection and listens again on the same port, keeping topics, records and
 * committed offsets (unlike Kafka it forgets group members: they rejoin after UNKNOWN_MEMBER_ID).
 * For assertions it numbers every append, accepted commit and handed-out generation in one order
 * (`nextSeq`), keeps the commit and generation history, and decodes records (`records()`).
 * Each API is served in the one version kafkajs 2.2.4 then picks (see apis.ts).
 *
 * Does not cover: replication, leader election, more than one broker, transactions and
 * idempotent producers (InitProducerId), compaction and retention, CRC checks, compressed batch
 * inspection (they are stored and served, only `records()` cannot decode them), ACLs, SASL and
 * TLS, quotas and throttling, flexible (tagged-field) versions, static membership, fetch
 * sessions, CreateTopics/DeleteTopics and the other admin APIs.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { APIS, type BrokerContext } from './apis.js'
import { GroupCoordinator, type CommitRecord } from './group.js'
import { TopicStore, type LogRecord } from './log.js'
import { API, ERR, Reader, Writer } from './protocol.js'

export interface KafkaTestBrokerOptions {
  /** Default 0: a free port picked by the OS (kept across restarts). */
  port?: number
  host?: string
  /** Create unknown topics on Metadata and Produce (as auto.create.topics.enable). Default true. */
  autoCreateTopics?: boolean
  /** Partitions of auto-created topics. Default 1. */
  defaultPartitions?: number
  /** Receives a line per group event (joins, rebalances, expiries). */
  log?: (msg: string) => void
}

export class KafkaTestBroker {
  readonly store = new TopicStore()
  readonly groups: GroupCoordinator
  readonly host: string
  private port = 0
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private stopped = new AbortController()
  private readonly log: (msg: string) => void

  private constructor(private readonly opts: KafkaTestBrokerOptions) {
    this.host = opts.host ?? '127.0.0.1'
    this.port = opts.port ?? 0
    this.log = opts.log ?? (() => undefined)
    this.groups = new GroupCoordinator(this.log)
  }

  static async start(opts: KafkaTestBrokerOptions = {}): Promise<KafkaTestBroker> {
    const b = new KafkaTestBroker(opts)
    await b.listen()
    return b
  }

  /** `host:port` for kafkajs's `brokers`. */
  get address(): string {
    return `${this.host}:${this.port}`
  }

  get listening(): boolean {
    return this.server !== undefined
  }

  private listen(): Promise<void> {
    this.stopped = new AbortController()
    const server = createServer((s) => this.accept(s))
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => {
        server.off('error', reject)
        const addr = server.address()
        if (addr && typeof addr === 'object') this.port = addr.port
        this.server = server
        resolve()
      })
    })
  }

  /** Stops listening and drops every connection; state is kept for `restart`. */
  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    this.stopped.abort()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    this.groups.reset()
    await new Promise<void>((r) => server.close(() => r()))
  }

  /** Stops and listens again on the same port, keeping topics, records and committed offsets. */
  async restart(downMs = 0): Promise<void> {
    await this.stop()
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs))
    await this.listen()
  }

  async close(): Promise<void> {
    await this.stop()
    this.groups.close()
  }

  // ---- test helpers ----

  createTopic(name: string, partitions: number): void {
    this.store.create(name, partitions)
  }

  /** The committed offset of a group for one partition (-1 when none). */
  committed(groupId: string, topic: string, partition: number): number {
    return this.groups.committed(groupId, topic, partition).offset
  }

  /** Every accepted commit, in order. */
  get commits(): readonly CommitRecord[] {
    return this.groups.commits
  }

  /** High watermark (log end offset) per partition. */
  highWatermarks(topic: string): number[] {
    return (this.store.topics.get(topic) ?? []).map((p) => p.end)
  }

  /** Every record of a topic, decoded, with its partition. */
  records(topic: string): Array<LogRecord & { partition: number }> {
    return (this.store.topics.get(topic) ?? []).flatMap((p, partition) => p.records().map((r) => ({ ...r, partition })))
  }

  // ---- connections ----

  private context(): BrokerContext {
    return {
      store: this.store,
      groups: this.groups,
      host: this.host,
      port: this.port,
      autoCreateTopics: this.opts.autoCreateTopics ?? true,
      defaultPartitions: this.opts.defaultPartitions ?? 1,
      stopped: this.stopped.signal,
      log: this.log,
    }
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket)
    socket.setNoDelay(true)
    const ctx = this.context()
    const chunks: Buffer[] = []
    let buffered = 0
    let queue: Promise<void> = Promise.resolve()
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      buffered += chunk.length
      for (;;) {
        if (buffered < 4) return
        let head = chunks[0] as Buffer
        if (head.length < 4) {
          head = Buffer.concat(chunks)
          chunks.splice(0, chunks.length, head)
        }
        const size = head.readInt32BE(0)
        if (buffered < 4 + size) return
        const all = chunks.length === 1 ? head : Buffer.concat(chunks, buffered)
        const frame = all.subarray(4, 4 + size)
        const rest = all.subarray(4 + size)
        chunks.length = 0
        if (rest.length > 0) chunks.push(rest)
        buffered = rest.length
        // One request at a time per connection, answered in order (Kafka mutes the channel).
        queue = queue.then(() => this.handle(socket, frame, ctx))
      }
    })
    socket.on('error', () => undefined)
    socket.on('close', () => this.sockets.delete(socket))
  }

  private async handle(socket: Socket, frame: Buffer, ctx: BrokerContext): Promise<void> {
    if (socket.destroyed) return
    const r = new Reader(frame)
    const apiKey = r.int16()
    const version = r.int16()
    const correlationId = r.int32()
    const clientId = r.string() ?? ''
    const api = APIS.get(apiKey)
    let body: Writer | null
    if (!api || version < api.min || version > api.max) {
      if (apiKey !== API.ApiVersions) {
        this.log(`unsupported request: api ${apiKey} v${version} from ${clientId}; closing the connection`)
        socket.destroy()
        return
      }
      // Kafka answers an unknown ApiVersions version in v0 format, so the client can downgrade.
      body = new Writer().int16(ERR.UNSUPPORTED_VERSION).int32(0)
    } else {
      try {
        body = await api.handle(r, ctx, version, clientId)
      } catch (e) {
        this.log(`api ${apiKey} v${version} failed: ${(e as Error).stack ?? String(e)}; closing the connection`)
        socket.destroy()
        return
      }
    }
    if (body === null || socket.destroyed) return
    const payload = body.toBuffer()
    const head = Buffer.allocUnsafe(8)
    head.writeInt32BE(payload.length + 4, 0)
    head.writeInt32BE(correlationId, 4)
    socket.write(Buffer.concat([head, payload]))
  }
}
