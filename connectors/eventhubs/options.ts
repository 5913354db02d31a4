import { OneOf, Strict, Type, type Static } from '../../src/sdk/index.js'

export const eventHubsConnectionSchema = Type.Object(
  {
    connectionString: Type.String({
      minLength: 1,
      description:
        'Connection string of the namespace or hub: Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=... (use ${VAR}). UseDevelopmentEmulator=true connects without TLS (the emulator).',
    }),
    eventHub: Type.String({ minLength: 1, maxLength: 256, description: 'Name of the event hub (overrides an EntityPath in the connection string).' }),
  },
  Strict,
)

const sequenceStart = Type.Object(
  {
    sequenceNumber: Type.Integer({ minimum: -1, description: 'Start after this sequence number (or at it, with inclusive: true).' }),
    inclusive: Type.Boolean({ default: false, description: 'Start at the event with this sequence number instead of after it.' }),
  },
  Strict,
)

const enqueuedStart = Type.Object(
  {
    enqueuedOn: Type.String({
      minLength: 1,
      pattern: '^\\d{4}-\\d{2}-\\d{2}T',
      description: 'Start with the first event enqueued after this time (ISO 8601, e.g. 2026-11-27T00:00:00Z).',
    }),
  },
  Strict,
)

export const eventHubsTriggerSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an eventhubs connection under connections:.' }),
    consumerGroup: Type.String({ minLength: 1, default: '$Default', description: 'Consumer group to read with. Give each function its own.' }),
    maxBatchSize: Type.Integer({
      minimum: 1,
      maximum: 10000,
      default: 100,
      description: 'Most events read from a partition at once (one checkpoint per read).',
    }),
    maxWaitTimeInSeconds: Type.Number({
      minimum: 0.05,
      maximum: 3600,
      default: 5,
      description: 'Longest wait for maxBatchSize events on a partition; whatever came by then is handed on.',
    }),
    prefetchCount: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100000, description: 'Events each partition receiver buffers ahead (link credit). Default: 3 x maxBatchSize.' }),
    ),
    checkpointIntervalMs: Type.Integer({
      minimum: 0,
      maximum: 600000,
      default: 1000,
      description:
        'Least time between two checkpoints of a partition (0: after every batch). Finished batches in between share one checkpoint; after a crash they run again.',
    }),
    startPosition: Type.Union([OneOf(['earliest', 'latest']), sequenceStart, enqueuedStart], {
      default: 'earliest',
      description: 'Where a partition without a checkpoint starts: earliest, latest, { sequenceNumber } or { enqueuedOn }.',
    }),
    checkpointStore: Type.Union(
      [
        OneOf(['sluice'], { description: "The gateway's own store (SQLite, or the shared store of several instances)." }),
        Type.Object(
          {
            blob: Type.Object(
              {
                connectionString: Type.String({ minLength: 1, description: 'Azure Storage connection string (use ${VAR}).' }),
                container: Type.String({
                  minLength: 3,
                  maxLength: 63,
                  pattern: '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$',
                  description: 'Blob container for checkpoints and ownership; created if missing.',
                }),
              },
              Strict,
            ),
          },
          Strict,
        ),
      ],
      {
        default: 'sluice',
        description: 'Where checkpoints and partition ownership are kept: sluice, or { blob: { connectionString, container } } (Azure Blob Storage).',
      },
    ),
    loadBalancing: Type.Optional(
      Type.Object(
        {
          strategy: OneOf(['greedy', 'balanced'], {
            default: 'greedy',
            description: 'greedy: claim every partition that is free (and its share of the others) at once; balanced: one partition per update.',
          }),
          updateIntervalMs: Type.Integer({
            minimum: 100,
            maximum: 3600000,
            default: 10000,
            description: 'How often ownership is renewed and partitions are (re)balanced.',
          }),
          ownershipExpirationMs: Type.Integer({
            minimum: 1000,
            maximum: 86400000,
            default: 60000,
            description:
              'An owner that did not renew for this long is gone: its partitions are claimed by others (after a crash, its partitions wait this long).',
          }),
        },
        { ...Strict, description: 'How gateway instances sharing a consumer group and checkpoint store split the partitions.' },
      ),
    ),
  },
  Strict,
)

export const eventHubsOutputSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an eventhubs connection under connections:.' }),
    partitionKey: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'Send every value with this partition key (same key, same partition, in order).' }),
    ),
    partitionId: Type.Optional(Type.String({ minLength: 1, description: 'Send every value to this partition. Default: the service spreads them.' })),
  },
  Strict,
)

export type EventHubsConnectionOptions = Static<typeof eventHubsConnectionSchema>
export type EventHubsTriggerOptions = Static<typeof eventHubsTriggerSchema>
export type EventHubsOutputOptions = Static<typeof eventHubsOutputSchema>
