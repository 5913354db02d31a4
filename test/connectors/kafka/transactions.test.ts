/**
 * Transactions on a real Kafka 4 broker: a transactional producer aborts every other
 * transaction. The trigger reads committed records only (isolation level read_committed), so
 * aborted records never reach the function and committed ones do; and the commit point and the
 * lag move past the transaction markers, also when a fetch holds nothing but an abort marker.
 */
import type { Producer } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { startGateway, waitFor } from '../../helpers/gateway.js'
import type { KafkaBroker } from '../../helpers/kafka-broker.js'
import { brokerPerFile, connectionYaml, FAST_GROUP, uid } from './helpers.js'

let broker: KafkaBroker
const cleanups = brokerPerFile((b) => {
  broker = b
})

const TRANSACTIONS = 10
const PER_TRANSACTION = 5

describe('kafka transactions', () => {
  it('hands committed transactions to the function, never aborted ones, and commits past every marker', async () => {
    const topic = uid('tx')
    const group = `g-${topic}`
    await broker.createTopic(topic, 1)
    const t = await startGateway({
      yaml: `connections:\n${connectionYaml('stream', broker)}\nfunctions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, ${FAST_GROUP} } }\n`,
      files: { 'functions/f.js': `export default async function (events, ctx) { for (const e of events) ctx.log.info('ev ' + JSON.stringify(e.body)) }` },
    })
    cleanups.push(() => t.stop())
    const producer: Producer = broker.client(uid('tx-producer')).producer({ transactionalId: uid('txid'), idempotent: true, maxInFlightRequests: 1 })
    await producer.connect()
    cleanups.push(() => producer.disconnect())
    const committed: number[] = []
    // Odd transactions abort, the last one too: its abort marker ends the partition.
    for (let tx = 0; tx < TRANSACTIONS; tx++) {
      const transaction = await producer.transaction()
      const values = Array.from({ length: PER_TRANSACTION }, (_, i) => tx * PER_TRANSACTION + i)
      await transaction.send({ topic, acks: -1, messages: values.map((n) => ({ value: JSON.stringify({ n, tx }) })) })
      if (tx % 2 === 0) {
        await transaction.commit()
        committed.push(...values)
      } else {
        await transaction.abort()
      }
    }
    // Every record plus one marker per transaction. The coordinator writes a transaction's marker
    // after EndTxn has answered, so the last one may still be on its way.
    const end = TRANSACTIONS * (PER_TRANSACTION + 1)
    await waitFor(async () => (await broker.ends(topic))[0] === end, 30_000, 'every transaction marker')
    const seen = () =>
      t.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('ev ')).map((l) => (JSON.parse((l.msg as string).slice(3)) as { n: number }).n)
    await waitFor(() => seen().length >= committed.length, 30_000, 'the committed records')
    await waitFor(async () => (await broker.committed(group, topic))[0] === end, 30_000, 'the commit at the end, past the last (abort) marker')
    expect(seen().sort((a, b) => a - b)).toEqual(committed)
    expect((await t.gw.metrics()).body).toContain(`sluice_source_lag{function="f",kind="kafka",connection="stream",source="${topic}/0"} 0`)
  })
})
