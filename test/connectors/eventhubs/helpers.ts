/** Shared pieces of the Event Hubs connector tests. */
import { randomBytes } from 'node:crypto'
import { EventHubProducerClient, type CreateBatchOptions } from '@azure/event-hubs'
import type { EventHubsTestServer } from '../../eventhubs/server.js'

/** A name unique to this test run, e.g. a hub name. */
export const uid = (prefix = 'h') => `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`

/**
 * Sends one event per body through the SDK's producer (batched; resolves once the server accepted
 * every batch). Without partitionKey/partitionId each batch lands in one partition, round robin.
 */
export async function publish(server: EventHubsTestServer, hub: string, bodies: unknown[], opts: CreateBatchOptions = {}): Promise<void> {
  const producer = new EventHubProducerClient(server.connectionString(), hub)
  try {
    let batch = await producer.createBatch(opts)
    for (const body of bodies) {
      if (batch.tryAdd({ body })) continue
      await producer.sendBatch(batch)
      batch = await producer.createBatch(opts)
      if (!batch.tryAdd({ body })) throw new Error('an event does not fit in a batch')
    }
    if (batch.count > 0) await producer.sendBatch(batch)
  } finally {
    await producer.close()
  }
}

/** The `connections:` line and trigger for a hub on the test server (fast load balancing for tests). */
export function eventHubsYaml(server: EventHubsTestServer, hub: string, trigger = '', connection = 'hub'): { connectionsYaml: string; triggerYaml: string } {
  return {
    connectionsYaml: `  ${connection}: { kind: eventhubs, connectionString: "${server.connectionString()}", eventHub: ${hub} }`,
    triggerYaml: `{ eventhubs: { connection: ${connection}, maxWaitTimeInSeconds: 0.5, loadBalancing: { updateIntervalMs: 500, ownershipExpirationMs: 5000 }${trigger ? `, ${trigger}` : ''} } }`,
  }
}
