/**
 * The test broker in a process of its own (benchmarks, manual runs): prints one JSON line
 * `{ "address": "127.0.0.1:<port>" }` on stdout once it listens, and stops on SIGTERM/SIGINT.
 *
 *   node --import tsx test/kafka/serve.ts [--port N] [--partitions N]
 */
import { KafkaTestBroker } from './broker.js'

const arg = (name: string): number | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : undefined
}

const broker = await KafkaTestBroker.start({ port: arg('port') ?? 0, defaultPartitions: arg('partitions') ?? 1 })
process.stdout.write(`${JSON.stringify({ address: broker.address })}\n`)
const stop = () => void broker.close().then(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
