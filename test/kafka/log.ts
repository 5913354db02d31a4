/**
 * The test broker's in-memory log: topics of partitions, each a list of record batches stored as
 * the producer sent them (magic 2), with only the base offset rewritten on append. The CRC covers
 * the batch from its attributes on, so the rewrite keeps it valid. Nothing is ever deleted
 * (no retention, no compaction).
 */

let sequence = 0
/**
 * The broker's event order: every append and every accepted commit takes the next number, so
 * tests can tell whether a record was written before an offset commit.
 */
export function nextSeq(): number {
  return ++sequence
}

/** One stored record batch. */
export interface StoredBatch {
  base: number
  /** nextSeq() at append. */
  seq: number
  count: number
  maxTimestamp: number
  buf: Buffer
}

/** One record, decoded for test assertions. */
export interface LogRecord {
  offset: number
  /** The append's place in the broker's event order (nextSeq). */
  seq: number
  timestamp: number
  key: string | null
  value: string | null
  headers: Record<string, string>
}

const MAGIC_OFFSET = 16
const ATTRIBUTES_OFFSET = 21
const LAST_OFFSET_DELTA_OFFSET = 23
const FIRST_TIMESTAMP_OFFSET = 27
const MAX_TIMESTAMP_OFFSET = 35
const RECORDS_COUNT_OFFSET = 57
const BATCH_HEADER = 61

export class PartitionLog {
  readonly batches: StoredBatch[] = []
  /** The log end offset, which is also the high watermark (there are no replicas to wait for). */
  end = 0

  /** Appends every batch in `recordSet`; returns the base offset of the first. */
  append(recordSet: Buffer): number {
    const first = this.end
    let pos = 0
    while (pos < recordSet.length) {
      if (recordSet.length - pos < BATCH_HEADER) throw new Error('truncated record batch')
      const size = 12 + recordSet.readInt32BE(pos + 8)
      if (pos + size > recordSet.length) throw new Error('truncated record batch')
      if (recordSet.readInt8(pos + MAGIC_OFFSET) !== 2) throw new Error('only record batches (magic 2) are supported')
      const buf = Buffer.from(recordSet.subarray(pos, pos + size))
      const count = buf.readInt32BE(LAST_OFFSET_DELTA_OFFSET) + 1
      buf.writeBigInt64BE(BigInt(this.end), 0)
      this.batches.push({ base: this.end, seq: nextSeq(), count, maxTimestamp: Number(buf.readBigInt64BE(MAX_TIMESTAMP_OFFSET)), buf })
      this.end += count
      pos += size
    }
    return first
  }

  /** Index of the batch holding `offset` (offset < end). */
  private indexOf(offset: number): number {
    let lo = 0
    let hi = this.batches.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if ((this.batches[mid] as StoredBatch).base <= offset) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (always at least one, as Kafka
   * does so a batch larger than the limit still makes progress).
   */
  read(offset: number, maxBytes: number): Buffer[] {
    if (offset >= this.end) return []
    const out: Buffer[] = []
    let bytes = 0
    for (let i = this.indexOf(offset); i < this.batches.length; i++) {
      const b = this.batches[i] as StoredBatch
      if (out.length > 0 && bytes + b.buf.length > maxBytes) break
      out.push(b.buf)
      bytes += b.buf.length
    }
    return out
  }

  /** The first offset whose batch has a timestamp at or after `ts` (ListOffsets by time). */
  offsetForTime(ts: number): number {
    for (const b of this.batches) if (b.maxTimestamp >= ts) return b.base
    return this.end
  }

  /** Every record, decoded (uncompressed batches only). */
  records(): LogRecord[] {
    return this.batches.flatMap((b) => decodeBatch(b.buf).map((r) => ({ ...r, seq: b.seq })))
  }
}

export class TopicStore {
  readonly topics = new Map<string, PartitionLog[]>()
  private readonly listeners = new Set<() => void>()

  create(name: string, partitions: number): PartitionLog[] {
    let t = this.topics.get(name)
    if (!t) {
      t = Array.from({ length: partitions }, () => new PartitionLog())
      this.topics.set(name, t)
    }
    return t
  }

  partition(topic: string, partition: number): PartitionLog | undefined {
    return this.topics.get(topic)?.[partition]
  }

  /** Calls `fn` after every append until the returned function is called. */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  appended(): void {
    for (const l of [...this.listeners]) l()
  }
}

/** Decodes the records of one uncompressed record batch. */
export function decodeBatch(buf: Buffer): Array<Omit<LogRecord, 'seq'>> {
  const attributes = buf.readInt16BE(ATTRIBUTES_OFFSET)
  if ((attributes & 0x07) !== 0) throw new Error('the test broker cannot decode compressed batches')
  const base = Number(buf.readBigInt64BE(0))
  const firstTimestamp = Number(buf.readBigInt64BE(FIRST_TIMESTAMP_OFFSET))
  const n = buf.readInt32BE(RECORDS_COUNT_OFFSET)
  const v = new VarReader(buf, BATCH_HEADER)
  const out: Array<Omit<LogRecord, 'seq'>> = []
  for (let i = 0; i < n; i++) {
    v.varint() // record length
    v.pos += 1 // attributes
    const tsDelta = v.varint()
    const offsetDelta = v.varint()
    const key = v.bytes()
    const value = v.bytes()
    const headers: Record<string, string> = {}
    const hn = v.varint()
    for (let h = 0; h < hn; h++) {
      const hk = v.bytes()?.toString('utf8') ?? ''
      headers[hk] = v.bytes()?.toString('utf8') ?? ''
    }
    out.push({ offset: base + offsetDelta, timestamp: firstTimestamp + tsDelta, key: key?.toString('utf8') ?? null, value: value?.toString('utf8') ?? null, headers })
  }
  return out
}

/** Zigzag varints of the record format (https://kafka.apache.org/documentation/#record). */
class VarReader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
  ) {}

  varint(): number {
    let result = 0
    let mul = 1
    for (;;) {
      const byte = this.buf[this.pos++] as number
      result += (byte & 0x7f) * mul
      if (byte < 0x80) break
      mul *= 128
    }
    // zigzag: even -> n/2, odd -> -(n+1)/2 (arithmetic, as results may pass 32 bits)
    return result % 2 === 0 ? result / 2 : -(result + 1) / 2
  }

  bytes(): Buffer | null {
    const len = this.varint()
    if (len < 0) return null
    const b = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return b
  }
}
