import { OneOf, Strict, Type, type Static } from '../../src/sdk/index.js'

/** Queue and exchange arguments (`x-max-length`, `x-dead-letter-exchange`, ...): AMQP table values. */
const argumentsSchema = Type.Record(Type.String({ minLength: 1 }), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), {
  ...Strict,
  description: 'AMQP arguments, e.g. { x-max-length: 100000, x-dead-letter-exchange: dlx }.',
})

export const amqpConnectionSchema = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      pattern: '^amqps?://',
      description: 'amqp://user:password@host:port/vhost (amqps:// for TLS). Query parameters such as frameMax pass through to the client.',
    }),
    heartbeatSeconds: Type.Integer({
      minimum: 0,
      maximum: 600,
      default: 5,
      description: 'AMQP heartbeat: a broker that stays silent for about two intervals counts as gone and the connection is reopened. 0 turns heartbeats off.',
    }),
    connectTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600000,
      default: 10000,
      description:
        'How long one connection attempt may take, and how long a start attempt keeps trying before it fails (the gateway then runs without the trigger and retries it, or does not start when the connection is required).',
    }),
    reconnect: Type.Optional(
      Type.Object(
        {
          initialDelayMs: Type.Integer({ minimum: 10, maximum: 600000, default: 500, description: 'Delay before the first reconnect attempt.' }),
          maxDelayMs: Type.Integer({
            minimum: 10,
            maximum: 3600000,
            default: 30000,
            description: 'Longest delay between attempts (exponential, with jitter).',
          }),
        },
        { ...Strict, description: 'Backoff between reconnect attempts after the connection is lost.' },
      ),
    ),
  },
  Strict,
)

export const amqpTriggerSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an amqp connection under connections:.' }),
    queue: Type.String({ minLength: 1, maxLength: 255, description: 'The queue to consume.' }),
    prefetch: Type.Integer({
      minimum: 1,
      maximum: 65535,
      default: 256,
      description: "Most unacknowledged messages held at once. The effective value is min(prefetch, the function's maxBacklog).",
    }),
    declare: Type.Optional(
      Type.Object(
        {
          type: OneOf(['classic', 'quorum'], {
            default: 'classic',
            description: 'Queue type. quorum: replicated, counts redeliveries itself (x-delivery-count).',
          }),
          durable: Type.Boolean({ default: true, description: 'Survives a broker restart (quorum queues are always durable).' }),
          autoDelete: Type.Boolean({ default: false, description: 'Deleted by the broker when its last consumer goes away.' }),
          arguments: Type.Optional(argumentsSchema),
        },
        { ...Strict, description: 'Declare the queue (at start and after every reconnect). Absent: the queue must exist.' },
      ),
    ),
    exchange: Type.Optional(
      Type.Object(
        {
          name: Type.String({ minLength: 1, maxLength: 255, description: 'Exchange name.' }),
          type: OneOf(['direct', 'topic', 'fanout', 'headers'], { default: 'topic', description: 'Exchange type.' }),
          durable: Type.Boolean({ default: true, description: 'Survives a broker restart.' }),
          autoDelete: Type.Boolean({ default: false, description: 'Deleted by the broker when its last binding goes away.' }),
        },
        { ...Strict, description: 'Declare an exchange (at start and after every reconnect).' },
      ),
    ),
    bindings: Type.Optional(
      Type.Array(
        Type.Object(
          {
            exchange: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'Exchange to bind to. Default: the declared exchange.' })),
            routingKey: Type.Optional(
              Type.String({ description: "Binding key, e.g. stations.*.telemetry on a topic exchange. Default: '' (fanout and headers exchanges ignore it)." }),
            ),
            arguments: Type.Optional(argumentsSchema),
          },
          Strict,
        ),
        { description: 'Bindings of the queue (made at start and after every reconnect).' },
      ),
    ),
    deadLetterExchange: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 255,
        description: 'Also publish each dead-lettered message to this exchange (it must exist), after it is in the dead-letter store.',
      }),
    ),
    deadLetterRoutingKey: Type.Optional(Type.String({ description: "Routing key for deadLetterExchange. Default: the message's own routing key." })),
  },
  Strict,
)

// Every key but connection is optional here: the loader fills in defaults of trigger and connection
// options but not of outputs (they sit in a record), so outputDefaults() applies them.
export const amqpOutputSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an amqp connection under connections:.' }),
    exchange: Type.Optional(
      Type.String({
        maxLength: 255,
        description: "Exchange to publish to. Default: '', the default exchange, which routes to the queue named by the routing key.",
      }),
    ),
    routingKey: Type.Optional(
      Type.String({ maxLength: 255, description: "Routing key of every message (with the default exchange: the queue name). Default: ''." }),
    ),
    mandatory: Type.Optional(Type.Boolean({ default: false, description: 'true: a message no queue receives fails the output (and the input is retried).' })),
    persistent: Type.Optional(Type.Boolean({ default: true, description: 'Delivery mode 2: the broker writes the message to disk (on durable queues).' })),
    confirmTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 600000,
        default: 30000,
        description:
          'Longest wait for the broker to confirm the messages of one invocation (a broker under a memory or disk alarm blocks publishers); then the input is retried.',
      }),
    ),
  },
  Strict,
)

export type AmqpConnectionOptions = Static<typeof amqpConnectionSchema>
export type AmqpTriggerOptions = Static<typeof amqpTriggerSchema>
export type AmqpOutputOptions = Static<typeof amqpOutputSchema>

/** Output settings with their defaults. */
export function outputDefaults(o: AmqpOutputOptions): Required<AmqpOutputOptions> {
  return {
    connection: o.connection,
    exchange: o.exchange ?? '',
    routingKey: o.routingKey ?? '',
    mandatory: o.mandatory ?? false,
    persistent: o.persistent ?? true,
    confirmTimeoutMs: o.confirmTimeoutMs ?? 30000,
  }
}

/** Connection settings with the defaults the schema fills in (also when built in code). */
export function connectionDefaults(c: Partial<AmqpConnectionOptions> & { url: string }): Required<AmqpConnectionOptions> {
  return {
    url: c.url,
    heartbeatSeconds: c.heartbeatSeconds ?? 5,
    connectTimeoutMs: c.connectTimeoutMs ?? 10000,
    reconnect: { initialDelayMs: c.reconnect?.initialDelayMs ?? 500, maxDelayMs: c.reconnect?.maxDelayMs ?? 30000 },
  }
}
