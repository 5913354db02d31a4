/**
 * Produce (v3), Fetch (v4, with long polling) and ListOffsets (v2) of the test broker.
 * https://kafka.apache.org/protocol#The_Messages_Produce
 */
import type { ApiDef, BrokerContext } from './apis.js'
import type { PartitionLog } from './log.js'
import { API, ERR, Writer, type Reader } from './protocol.js'

const EARLIEST = -2
const LATEST = -1

export const produce: ApiDef = {
  key: API.Produce,
  min: 3,
  max: 3,
  handle(r, ctx): Writer | null {
    r.string() // transactional id: transactions are not supported
    const acks = r.int16()
    r.int32() // timeout: appends are immediate
    const topics = r.array((r) => ({ name: r.string() ?? '', parts: r.array((r) => ({ partition: r.int32(), records: r.bytes() })) ?? [] })) ?? []
    const results = topics.map((t) => {
      let logs = ctx.store.topics.get(t.name)
      if (!logs && ctx.autoCreateTopics) logs = ctx.store.create(t.name, ctx.defaultPartitions)
      return {
        name: t.name,
        parts: t.parts.map((p) => {
          const log = logs?.[p.partition]
          if (!log) return { partition: p.partition, error: ERR.UNKNOWN_TOPIC_OR_PARTITION, base: -1 }
          try {
            return { partition: p.partition, error: ERR.NONE, base: p.records ? log.append(p.records) : log.end }
          } catch (e) {
            ctx.log(`produce to ${t.name}/${p.partition} rejected: ${(e as Error).message}`)
            return { partition: p.partition, error: ERR.CORRUPT_MESSAGE, base: -1 }
          }
        }),
      }
    })
    ctx.store.appended()
    if (acks === 0) return null
    const w = new Writer()
    w.array(results, (w, t) => w.string(t.name).array(t.parts, (w, p) => w.int32(p.partition).int16(p.error).int64(p.base).int64(-1)))
    return w.int32(0)
  },
}

interface FetchPartition {
  partition: number
  offset: number
  maxBytes: number
}

interface FetchRequest {
  maxWaitMs: number
  minBytes: number
  maxBytes: number
  topics: Array<{ name: string; parts: FetchPartition[] }>
}

export const fetch: ApiDef = {
  key: API.Fetch,
  min: 4,
  max: 4,
  async handle(r, ctx): Promise<Writer> {
    r.int32() // replica id
    const maxWaitMs = r.int32()
    const minBytes = r.int32()
    const maxBytes = r.int32()
    r.int8() // isolation level: every record is committed here
    const topics = r.array((r) => ({ name: r.string() ?? '', parts: r.array((r) => ({ partition: r.int32(), offset: r.int64(), maxBytes: r.int32() })) ?? [] })) ?? []
    const req: FetchRequest = { maxWaitMs, minBytes, maxBytes, topics }
    let res = fetchOnce(req, ctx)
    if (res.bytes < Math.max(1, req.minBytes) && req.maxWaitMs > 0 && !ctx.stopped.aborted) {
      // Long poll: answer on the first append that satisfies minBytes, or at maxWaitMs.
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer)
          off()
          ctx.stopped.removeEventListener('abort', done)
          resolve()
        }
        const timer = setTimeout(done, req.maxWaitMs)
        const off = ctx.store.onAppend(() => {
          if (fetchOnce(req, ctx, true).bytes >= Math.max(1, req.minBytes)) done()
        })
        ctx.stopped.addEventListener('abort', done)
      })
      res = fetchOnce(req, ctx)
    }
    return res.writer
  },
}

function fetchOnce(req: FetchRequest, ctx: BrokerContext, sizeOnly = false): { bytes: number; writer: Writer } {
  let bytes = 0
  const w = new Writer().int32(0)
  const topics = req.topics.map((t) => ({
    name: t.name,
    parts: t.parts.map((p) => {
      const log: PartitionLog | undefined = ctx.store.partition(t.name, p.partition)
      if (!log) return { partition: p.partition, error: ERR.UNKNOWN_TOPIC_OR_PARTITION, hw: -1, batches: [] as Buffer[] }
      if (p.offset < 0 || p.offset > log.end) return { partition: p.partition, error: ERR.OFFSET_OUT_OF_RANGE, hw: log.end, batches: [] as Buffer[] }
      // The response as a whole stays within maxBytes, but always carries at least one batch.
      const budget = bytes === 0 ? p.maxBytes : Math.min(p.maxBytes, req.maxBytes - bytes)
      const batches = budget > 0 || bytes === 0 ? log.read(p.offset, budget) : []
      for (const b of batches) bytes += b.length
      return { partition: p.partition, error: ERR.NONE, hw: log.end, batches }
    }),
  }))
  if (sizeOnly) return { bytes, writer: w }
  w.array(topics, (w, t) =>
    w.string(t.name).array(t.parts, (w, p) => {
      // high watermark, last stable offset (no transactions: the same), no aborted transactions
      w.int32(p.partition).int16(p.error).int64(p.hw).int64(p.hw).int32(-1)
      w.int32(p.batches.reduce((n, b) => n + b.length, 0))
      for (const b of p.batches) w.raw(b)
    }),
  )
  return { bytes, writer: w }
}

export const listOffsets: ApiDef = {
  key: API.ListOffsets,
  min: 2,
  max: 2,
  handle(r, ctx): Writer {
    r.int32() // replica id
    r.int8() // isolation level: every record is committed here
    const topics = r.array((r) => ({ name: r.string() ?? '', parts: r.array((r) => ({ partition: r.int32(), timestamp: r.int64() })) ?? [] })) ?? []
    const w = new Writer().int32(0)
    w.array(topics, (w, t) =>
      w.string(t.name).array(t.parts, (w, p) => {
        const log = ctx.store.partition(t.name, p.partition)
        if (!log) {
          w.int32(p.partition).int16(ERR.UNKNOWN_TOPIC_OR_PARTITION).int64(-1).int64(-1)
          return
        }
        const offset = p.timestamp === EARLIEST ? 0 : p.timestamp === LATEST ? log.end : log.offsetForTime(p.timestamp)
        w.int32(p.partition).int16(ERR.NONE).int64(-1).int64(offset)
      }),
    )
    return w
  },
}
