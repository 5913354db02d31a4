import { OneOf, Strict, Type, type Static } from '../../src/sdk/index.js'

/** Kafka's legal topic names (kafka.common.internals.Topic). */
const TOPIC_PATTERN = '^[A-Za-z0-9._-]{1,249}$'

const topicName = (description: string) => Type.String({ pattern: TOPIC_PATTERN, description })

export const kafkaConnectionSchema = Type.Object(
  {
    brokers: Type.Array(Type.String({ pattern: '^\\S+:[0-9]{1,5}$', description: 'host:port' }), {
      minItems: 1,
      description: 'Bootstrap brokers as host:port, e.g. [kafka-1:9092, kafka-2:9092].',
    }),
    clientId: Type.String({ minLength: 1, default: 'sluice', description: 'Client id sent to the brokers (shows in their logs and quotas).' }),
    ssl: Type.Optional(
      Type.Union(
        [
          Type.Boolean(),
          Type.Object(
            {
              rejectUnauthorized: Type.Optional(Type.Boolean({ description: "Verify the brokers' certificates. Default: true." })),
              ca: Type.Optional(Type.String({ minLength: 1, description: 'CA certificate(s), PEM.' })),
              cert: Type.Optional(Type.String({ minLength: 1, description: 'Client certificate, PEM (mutual TLS).' })),
              key: Type.Optional(Type.String({ minLength: 1, description: 'Client private key, PEM.' })),
              passphrase: Type.Optional(Type.String({ description: 'Passphrase of the private key.' })),
              servername: Type.Optional(Type.String({ minLength: 1, description: 'Server name for SNI and certificate checks.' })),
            },
            Strict,
          ),
        ],
        { description: 'TLS: true, or Node TLS options (passed through to kafkajs).' },
      ),
    ),
    sasl: Type.Optional(
      Type.Object(
        {
          mechanism: OneOf(['plain', 'scram-sha-256', 'scram-sha-512'], { description: 'SASL mechanism.' }),
          username: Type.String({ minLength: 1 }),
          password: Type.String({ description: 'Use ${VAR}.' }),
        },
        { ...Strict, description: 'SASL authentication (passed through to kafkajs); use it with ssl.' },
      ),
    ),
    connectionTimeoutMs: Type.Integer({ minimum: 100, maximum: 600000, default: 3000, description: 'How long one connection attempt to a broker may take.' }),
    requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 600000, default: 30000, description: "How long a request waits for the broker's answer." }),
    startTimeoutMs: Type.Integer({
      minimum: 0,
      maximum: 3600000,
      default: 60000,
      description: 'How long a trigger may take to connect and join its consumer group when the gateway starts before the start fails.',
    }),
  },
  Strict,
)

export const kafkaTriggerSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of a kafka connection under connections:.' }),
    topic: Type.Optional(topicName('The topic to consume (or topics:).')),
    topics: Type.Optional(Type.Array(topicName('A topic name.'), { minItems: 1, uniqueItems: true, description: 'Several topics to consume (or topic:).' })),
    groupId: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 255,
        description: 'Consumer group. Default: sluice-<function>. Gateway instances with the same group split the partitions.',
      }),
    ),
    fromBeginning: Type.Boolean({
      default: true,
      description:
        'Where a group without committed offsets starts: true at the oldest message (nothing published before the first start is skipped), false at the end.',
    }),
    orderBy: OneOf(['partition', 'key'], {
      default: 'partition',
      description:
        'partition: events of a partition run in order. key: in order per message key within a partition, different keys in parallel (messages without a key keep partition order).',
    }),
    sessionTimeoutMs: Type.Integer({
      minimum: 1000,
      maximum: 3600000,
      default: 30000,
      description: 'The group drops a gateway that has not sent a heartbeat for this long and gives its partitions to the others.',
    }),
    heartbeatIntervalMs: Type.Integer({
      minimum: 100,
      maximum: 600000,
      default: 3000,
      description: 'Time between heartbeats (keep it well below sessionTimeoutMs).',
    }),
    rebalanceTimeoutMs: Type.Integer({
      minimum: 1000,
      maximum: 3600000,
      default: 60000,
      description: 'How long a rebalance waits for every member to rejoin.',
    }),
    maxWaitMs: Type.Integer({ minimum: 10, maximum: 60000, default: 1000, description: 'Longest time a fetch waits at the broker for new messages.' }),
    maxBytesPerPartition: Type.Integer({ minimum: 1024, maximum: 104857600, default: 1048576, description: 'Most bytes one fetch takes from one partition.' }),
    maxInFlightPerPartition: Type.Integer({
      minimum: 1,
      maximum: 1000000,
      default: 200,
      description:
        'Most unfinished events of one partition; its batch waits above it. Keeps every partition a share of the backlog, bounds what a rebalance must finish before the partition moves (it must fit in rebalanceTimeoutMs) and what runs again after a crash. Raise it for orderBy: key with many keys per partition.',
    }),
    commitIntervalMs: Type.Integer({
      minimum: 0,
      maximum: 60000,
      default: 200,
      description:
        'While a batch runs, offsets are committed at most this often (at the lowest unfinished offset of each partition), and again when it is through. Smaller: fewer repeats after a crash, more commit requests.',
    }),
  },
  Strict,
)

export const kafkaOutputSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of a kafka connection under connections:.' }),
    topic: topicName('Topic each value is produced to.'),
    key: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_$-]+(\\.[A-Za-z0-9_$-]+)*$',
        description:
          'Field of each value used as the message key, as a dotted path (e.g. station): messages with the same key land on the same partition. Default: no key.',
      }),
    ),
    // No schema default: the loader does not fill defaults inside outputs: (a Record); see output.ts.
    compression: Type.Optional(OneOf(['none', 'gzip'], { description: 'Compression of produced batches. Default: none.' })),
  },
  Strict,
)

export type KafkaConnectionOptions = Static<typeof kafkaConnectionSchema>
export type KafkaTriggerOptions = Static<typeof kafkaTriggerSchema>
export type KafkaOutputOptions = Static<typeof kafkaOutputSchema>

/** The topics a trigger consumes (`topic` or `topics`). */
export function triggerTopics(t: Pick<KafkaTriggerOptions, 'topic' | 'topics'>): string[] {
  return t.topics ?? (t.topic === undefined ? [] : [t.topic])
}

/** The consumer group of a trigger unless `groupId` is set. */
export function defaultGroupId(fn: string): string {
  return `sluice-${fn}`
}
