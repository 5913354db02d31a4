/**
 * The Event Hubs test server (test/eventhubs) in a process of its own for bench/eventhubs.ts, so
 * serving the events does not share a thread with the consumer being measured. Driven over IPC:
 *   -> { fill: { hub, partitions, perPartition } }   <- { filled: hub }
 * and reports { port } once it listens.
 */
import { EventHubsTestServer } from '../test/eventhubs/server.js'

const server = new EventHubsTestServer()
await server.start()

/** A telemetry reading of the demo's kind, about 150 bytes of JSON. */
const reading = (k: number) => ({
  station: `st-${String(k % 200).padStart(3, '0')}`,
  scooter: `sc-${k % 5000}`,
  battery: k % 100,
  speed: (k % 25) + 0.5,
  lat: 52.37,
  lon: 4.9,
  at: 1764230400000 + k,
})

process.on('message', (m: { fill?: { hub: string; partitions: number; perPartition: number } }) => {
  if (!m.fill) return
  const { hub, partitions, perPartition } = m.fill
  server.createHub(hub, partitions)
  for (let p = 0; p < partitions; p++) {
    const bodies = Array.from({ length: perPartition }, (_, i) => reading(p * perPartition + i))
    server.append(hub, String(p), bodies)
  }
  process.send?.({ filled: hub })
})
process.on('disconnect', () => process.exit(0))
process.send?.({ port: server.port, connectionString: server.connectionString() })
