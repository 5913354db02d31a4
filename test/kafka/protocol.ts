/**
 * Kafka wire primitives for the test broker: a reader for requests and a writer for responses
 * (big-endian ints, INT16-length strings, INT32-length bytes and arrays, as in the Kafka protocol
 * guide: https://kafka.apache.org/protocol#protocol_types). Written independently of kafkajs's
 * own encoder so the client is checked against a second reading of the spec, not against itself.
 */

export class Reader {
  offset = 0
  constructor(readonly buf: Buffer) {}

  int8(): number {
    const v = this.buf.readInt8(this.offset)
    this.offset += 1
    return v
  }
  int16(): number {
    const v = this.buf.readInt16BE(this.offset)
    this.offset += 2
    return v
  }
  int32(): number {
    const v = this.buf.readInt32BE(this.offset)
    this.offset += 4
    return v
  }
  /** INT64 as a number: offsets and timestamps here stay far below 2^53. */
  int64(): number {
    const v = this.buf.readBigInt64BE(this.offset)
    this.offset += 8
    return Number(v)
  }
  bool(): boolean {
    return this.int8() !== 0
  }
  /** STRING / NULLABLE_STRING (null for length -1). */
  string(): string | null {
    const len = this.int16()
    if (len < 0) return null
    const s = this.buf.toString('utf8', this.offset, this.offset + len)
    this.offset += len
    return s
  }
  /** BYTES / NULLABLE_BYTES, copied out of the frame. */
  bytes(): Buffer | null {
    const len = this.int32()
    if (len < 0) return null
    const b = Buffer.from(this.buf.subarray(this.offset, this.offset + len))
    this.offset += len
    return b
  }
  /** ARRAY (null arrays read as null). */
  array<T>(read: (r: Reader) => T): T[] | null {
    const n = this.int32()
    if (n < 0) return null
    const out: T[] = new Array(n)
    for (let i = 0; i < n; i++) out[i] = read(this)
    return out
  }
}

/** Builds a response from chunks; `toBuffer` joins them once. */
export class Writer {
  private readonly chunks: Buffer[] = []
  private size = 0

  private push(b: Buffer): this {
    this.chunks.push(b)
    this.size += b.length
    return this
  }
  int8(v: number): this {
    const b = Buffer.allocUnsafe(1)
    b.writeInt8(v)
    return this.push(b)
  }
  int16(v: number): this {
    const b = Buffer.allocUnsafe(2)
    b.writeInt16BE(v)
    return this.push(b)
  }
  int32(v: number): this {
    const b = Buffer.allocUnsafe(4)
    b.writeInt32BE(v)
    return this.push(b)
  }
  int64(v: number): this {
    const b = Buffer.allocUnsafe(8)
    b.writeBigInt64BE(BigInt(v))
    return this.push(b)
  }
  bool(v: boolean): this {
    return this.int8(v ? 1 : 0)
  }
  string(s: string | null): this {
    if (s === null) return this.int16(-1)
    const b = Buffer.from(s, 'utf8')
    return this.int16(b.length).push(b)
  }
  bytes(b: Buffer | null): this {
    if (b === null) return this.int32(-1)
    return this.int32(b.length).push(b)
  }
  /** Raw bytes without a length prefix (record sets after their size). */
  raw(b: Buffer): this {
    return this.push(b)
  }
  array<T>(items: readonly T[], write: (w: Writer, item: T) => void): this {
    this.int32(items.length)
    for (const it of items) write(this, it)
    return this
  }
  get length(): number {
    return this.size
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.size)
  }
}

/** API keys served (https://kafka.apache.org/protocol#protocol_api_keys). */
export const API = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  ApiVersions: 18,
} as const

/** Error codes used (https://kafka.apache.org/protocol#protocol_error_codes). */
export const ERR = {
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  ILLEGAL_GENERATION: 22,
  INCONSISTENT_GROUP_PROTOCOL: 23,
  INVALID_GROUP_ID: 24,
  UNKNOWN_MEMBER_ID: 25,
  REBALANCE_IN_PROGRESS: 27,
  UNSUPPORTED_VERSION: 35,
} as const
