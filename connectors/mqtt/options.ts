import { Strict, Type, type Static } from '../../src/sdk/index.js'

/** Reconnect backoff defaults (also the schema defaults). */
export const RECONNECT_DEFAULTS = { initialDelayMs: 200, maxDelayMs: 30000 } as const
/** Where `url: embedded` listens unless `port` says otherwise. */
export const EMBEDDED_DEFAULT_PORT = 1884

const qos = (values: readonly number[], dflt: number, description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { default: dflt, description },
  )

export const mqttConnectionSchema = Type.Object(
  {
    url: Type.String({
      pattern: '^(embedded|(mqtt|mqtts|ws|wss)://[^\\s/]+(/\\S*)?)$',
      description:
        'Broker URL (mqtt://host:1883, mqtts://, ws://, wss://), or `embedded`: a broker started inside the gateway (MQTT 3.1.1, sessions in memory; for demos and tests).',
    }),
    username: Type.Optional(Type.String({ description: 'User name sent in CONNECT.' })),
    password: Type.Optional(Type.String({ description: 'Password sent in CONNECT (use ${VAR}).' })),
    protocolVersion: Type.Optional(
      Type.Union([Type.Literal(4), Type.Literal(5)], {
        description: '5 (MQTT 5) or 4 (MQTT 3.1.1). Default: 5; 4 with url: embedded, which speaks 3.1.1 only.',
      }),
    ),
    keepalive: Type.Integer({ minimum: 0, maximum: 65535, default: 30, description: 'Seconds between keep-alive pings on an idle connection (0: none).' }),
    connectTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600000,
      default: 10000,
      description: "How long one connection attempt waits for the broker's CONNACK.",
    }),
    startTimeoutMs: Type.Integer({
      minimum: 0,
      maximum: 3600000,
      default: 30000,
      description:
        'How long a trigger keeps trying to connect and subscribe at gateway start before its start attempt fails (the gateway then runs without it and retries, or does not start when the connection is required).',
    }),
    reconnect: Type.Optional(
      Type.Object(
        {
          initialDelayMs: Type.Integer({
            minimum: 0,
            maximum: 600000,
            default: RECONNECT_DEFAULTS.initialDelayMs,
            description: 'Delay before the first reconnect attempt.',
          }),
          maxDelayMs: Type.Integer({
            minimum: 0,
            maximum: 3600000,
            default: RECONNECT_DEFAULTS.maxDelayMs,
            description: 'Longest delay between attempts (exponential backoff with jitter).',
          }),
        },
        { ...Strict, description: 'Reconnect backoff after the connection is lost.' },
      ),
    ),
    port: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 65535,
        description: `url: embedded only: the port the built-in broker listens on (0: any free port). Default: ${EMBEDDED_DEFAULT_PORT}.`,
      }),
    ),
    host: Type.Optional(Type.String({ minLength: 1, description: 'url: embedded only: the address the built-in broker listens on. Default: 127.0.0.1.' })),
  },
  Strict,
)

export const mqttTriggerSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an mqtt connection under connections:.' }),
    topic: Type.String({ minLength: 1, maxLength: 65535, description: 'Topic filter: + matches one level, # (last) the rest, e.g. stations/+/telemetry.' }),
    qos: qos(
      [0, 1, 2],
      1,
      '1: at-least-once (PUBACK after the function succeeded or the message was dead-lettered); 0: at-most-once. 2 is refused (see connectors/mqtt/README.md).',
    ),
    share: Type.Optional(
      Type.String({
        minLength: 1,
        pattern: '^[^/+#\\s]+$',
        description:
          'Shared-subscription group: subscribes to $share/<group>/<topic>, so gateway instances split the messages. Give each instance its own clientId.',
      }),
    ),
    clientId: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description: 'Client id of the persistent session. Default: sluice-<connection>-<function> (with share: sluice-<connection>-<function>-<hostname>).',
      }),
    ),
    sessionExpiryInterval: Type.Integer({
      minimum: 0,
      maximum: 4294967295,
      default: 86400,
      description:
        'MQTT 5: seconds the broker keeps the session (and queues messages) while the gateway is away. MQTT 3.1.1 sessions last until the broker expires them.',
    }),
    maxInflight: Type.Integer({
      minimum: 1,
      maximum: 65535,
      default: 1000,
      description:
        'Most messages the trigger holds unacknowledged; at this many it stops reading until PUBACKs go out. MQTT 5 sends it as Receive Maximum. Bounds memory and the duplicates after a crash.',
    }),
  },
  Strict,
)

/**
 * Output defaults. They are applied in code, not as schema defaults: the config loader fills
 * defaults of trigger options but not inside `outputs:` entries (TypeBox does not descend into
 * record values), so a schema default would make the key required.
 */
export const OUTPUT_DEFAULTS = { qos: 1, retain: false, timeoutMs: 10000 } as const

export const mqttOutputSchema = Type.Object(
  {
    connection: Type.String({ minLength: 1, description: 'Name of an mqtt connection under connections:.' }),
    topic: Type.String({ minLength: 1, maxLength: 65535, pattern: '^[^+#]+$', description: 'Topic each value is published to (no wildcards).' }),
    qos: Type.Optional(
      Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)], {
        description: `1 (or 2): the input is acknowledged only after the broker confirmed the message; 0: not confirmed. Default: ${OUTPUT_DEFAULTS.qos}.`,
      }),
    ),
    retain: Type.Optional(Type.Boolean({ description: `Publish with the retain flag. Default: ${OUTPUT_DEFAULTS.retain}.` })),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 600000,
        description: `How long a publish waits for the broker's confirmation before the invocation fails (and is retried). Default: ${OUTPUT_DEFAULTS.timeoutMs}.`,
      }),
    ),
  },
  Strict,
)

export type MqttConnectionOptions = Static<typeof mqttConnectionSchema>
export type MqttTriggerOptions = Static<typeof mqttTriggerSchema>
export type MqttOutputOptions = Static<typeof mqttOutputSchema>
