/**
 * Kafka: messages/s from a pre-filled topic through the gateway (kafka trigger, router, worker
 * host, a small function; offsets committed at the lowest unfinished offset) against a bare
 * kafkajs eachBatch consumer that only commits each batch, both reading the same partitions of
 * the same test broker (test/kafka/broker.ts, in a process of its own). Each round reads the
 * whole topic with a fresh consumer group, from the moment the group is joined until every
 * partition's committed offset reached its end. Rounds alternate. A third case shows the ceiling
 * the function pipeline sets: the same events, built in memory, handed to a gateway's router the
 * way the connector does (per partition, 200 in flight), without Kafka.
 *
 *   node --no-node-snapshot --import tsx bench/kafka.ts [messages] [partitions] [rounds]
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { Kafka, logLevel, type Admin } from 'kafkajs'
import { Pending } from '../connectors/kafka/offsets.js'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'
import { benchGateway, fmt } from './common.js'

const TOTAL = Number(process.argv[2] ?? 100_000)
const PARTITIONS = Number(process.argv[3] ?? 8)
const ROUNDS = Number(process.argv[4] ?? 3)
const TOPIC = 'telemetry'
const FN = `export default async function (events) {
  let low = 0
  for (const e of events) if (e.body.battery < 15) low++
  return { low }
}`

// The broker in its own process, so neither consumer shares its event loop.
const brokerProc = spawn(process.execPath, ['--import', 'tsx', new URL('../test/kafka/serve.ts', import.meta.url).pathname, '--partitions', String(PARTITIONS)], {
  stdio: ['ignore', 'pipe', 'inherit'],
})
const address = await new Promise<string>((resolve, reject) => {
  brokerProc.once('exit', (code) => reject(new Error(`the test broker exited with ${code}`)))
  brokerProc.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString().split('\n')[0] as string) as { address: string }).address))
})
const kafka = new Kafka({ brokers: [address], clientId: 'bench', logLevel: logLevel.NOTHING })

async function fill(): Promise<void> {
  const producer = kafka.producer()
  await producer.connect()
  const CHUNK = 1000
  for (let i = 0; i < TOTAL; i += CHUNK) {
    await producer.send({
      topic: TOPIC,
      acks: -1,
      messages: Array.from({ length: Math.min(CHUNK, TOTAL - i) }, (_, j) => {
        const k = i + j
        const station = `st-${String(k % 200).padStart(3, '0')}`
        return { key: station, value: JSON.stringify({ station, scooter: `sc-${k % 5000}`, battery: k % 100, speed: (k % 25) + 0.5, lat: 52.37, lon: 4.9 }) }
      }),
    })
  }
  await producer.disconnect()
}

/**
 * Resolves with the time at which every partition's committed offset of `group` reached its end.
 * Polls the broker slowly until `nearlyDone()` (polling costs CPU on a 2-core machine), then fast.
 */
async function committedAll(admin: Admin, group: string, nearlyDone: () => boolean): Promise<number> {
  for (;;) {
    const [t] = await admin.fetchOffsets({ groupId: group, topics: [TOPIC] })
    const sum = (t?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0)
    if (sum >= TOTAL) return performance.now()
    await new Promise((r) => setTimeout(r, nearlyDone() ? 2 : 50))
  }
}

let round = 0

/** The baseline: kafkajs eachBatch, committing each batch's end, nothing else. */
async function bare(admin: Admin): Promise<number> {
  const group = `bare-${++round}`
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: 1000 })
  let joined = 0
  consumer.on(consumer.events.GROUP_JOIN, () => (joined ||= performance.now()))
  await consumer.connect()
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true })
  // Its own commits tell when it is done: no polling while it runs.
  const committed = new Map<number, number>()
  let end = 0
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
        resolveOffset(batch.lastOffset())
        const next = Number(batch.lastOffset()) + 1
        await commitOffsetsIfNecessary({ topics: [{ topic: TOPIC, partitions: [{ partition: batch.partition, offset: String(next) }] }] })
        committed.set(batch.partition, next)
        if (!end && [...committed.values()].reduce((a, b) => a + b, 0) >= TOTAL) {
          end = performance.now()
          resolve()
        }
      },
    })
  })
  await done
  await committedAll(admin, group, () => true) // the broker agrees
  await consumer.disconnect()
  return TOTAL / ((end - joined) / 1000)
}

/** The gateway with a kafka trigger on the same topic; the clock starts at its group join. */
async function gateway(admin: Admin): Promise<{ rate: number; processedRate: number }> {
  const group = `gateway-${++round}`
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-kafka-'))
  writeFileSync(join(dir, 'fn.js'), FN)
  const yaml = `http: { port: 0, host: 127.0.0.1 }
store: { path: ':memory:' }
log: { level: info }
connections:
  stream: { kind: kafka, brokers: ["${address}"] }
functions:
  consume:
    code: fn.js
    trigger: { kafka: { connection: stream, topic: ${TOPIC}, groupId: ${group} } }
`
  let joined = 0
  const logs = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const s = chunk.toString()
      if (!joined && s.includes('kafka partitions assigned')) joined = performance.now()
      if (s.includes('"level":"error"') || s.includes('"level":"warn"')) process.stderr.write(s)
      cb()
    },
  })
  const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
  const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('info', logs as never) })
  let processedAt = 0
  // router.stats is a field read (gw.function() computes percentiles: too costly to poll).
  const watch = setInterval(() => {
    if (!processedAt && gw.router.stats('consume').stats.eventsDone >= TOTAL) processedAt = performance.now()
  }, 5)
  const end = await committedAll(admin, group, () => processedAt > 0)
  clearInterval(watch)
  const done = gw.function('consume')?.counts.eventsDone ?? 0
  await gw.stop()
  if (done < TOTAL) throw new Error(`only ${done} of ${TOTAL} events were done`)
  return { rate: TOTAL / ((end - joined) / 1000), processedRate: TOTAL / (((processedAt || end) - joined) / 1000) }
}

/** The function pipeline alone: kafka-shaped events delivered per partition, 200 in flight each. */
async function pipelineOnly(): Promise<number> {
  const gw = await benchGateway(
    `http: { port: 0, host: 127.0.0.1 }\nstore: { path: ':memory:' }\nfunctions:\n  consume:\n    code: fn.js\n    trigger: { timer: { schedule: "0 0 0 1 1 *" } }\n`,
    { 'fn.js': FN },
  )
  const perPartition = Math.ceil(TOTAL / PARTITIONS)
  const event = (part: number, offset: number) => {
    const k = offset * PARTITIONS + part
    const station = `st-${String(k % 200).padStart(3, '0')}`
    return {
      id: `${TOPIC}-${part}-${offset}`,
      source: `kafka://stream/${TOPIC}`,
      key: `${TOPIC}/${part}`,
      time: new Date().toISOString(),
      body: { station, scooter: `sc-${k % 5000}`, battery: k % 100, speed: (k % 25) + 0.5, lat: 52.37, lon: 4.9 },
      meta: { topic: TOPIC, partition: part, offset, timestamp: Date.now(), key: station, headers: {} },
    }
  }
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: PARTITIONS }, async (_, part) => {
      const work = new Pending()
      for (let o = 0; o < perPartition; o++) {
        if (work.count >= 200) await work.below(100)
        work.add()
        void gw.router.deliver('consume', [event(part, o)]).finally(() => work.settle())
      }
      await work.done()
    }),
  )
  const rate = (perPartition * PARTITIONS) / ((performance.now() - t0) / 1000)
  await gw.stop()
  return rate
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

try {
  await fill()
  const admin = kafka.admin()
  await admin.connect()
  process.stderr.write(`topic ${TOPIC}: ${TOTAL} messages in ${PARTITIONS} partitions\n`)
  // Warm-up: the first reads pay for JIT and the broker's first serves.
  await bare(admin)
  await gateway(admin)
  const bares: number[] = []
  const gws: number[] = []
  const processed: number[] = []
  const pipeline: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    bares.push(await bare(admin))
    const g = await gateway(admin)
    gws.push(g.rate)
    processed.push(g.processedRate)
    pipeline.push(await pipelineOnly())
    process.stderr.write(
      `round ${i + 1}: bare ${fmt(bares[i] as number, 0)}/s, gateway ${fmt(g.rate, 0)}/s (all done at ${fmt(g.processedRate, 0)}/s), pipeline alone ${fmt(pipeline[i] as number, 0)}/s\n`,
    )
  }
  await admin.disconnect()
  const b = median(bares)
  const g = median(gws)
  console.log(`\nkafka, ${TOTAL} messages, ${PARTITIONS} partitions, median of ${ROUNDS} rounds (messages/s, join -> last commit)`)
  console.log(`bare kafkajs eachBatch, commit only   ${fmt(b, 0).padStart(10)}   1.00x`)
  console.log(`gateway (kafka trigger -> function)   ${fmt(g, 0).padStart(10)}   ${fmt(g / b)}x`)
  console.log(`gateway, until the last event done    ${fmt(median(processed), 0).padStart(10)}   ${fmt(median(processed) / b)}x`)
  console.log(`function pipeline alone, no Kafka     ${fmt(median(pipeline), 0).padStart(10)}   ${fmt(median(pipeline) / b)}x`)
} finally {
  brokerProc.kill('SIGTERM')
}
