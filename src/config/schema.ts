/**
 * The configuration schema: one TypeBox declaration per section gives the TypeScript types, the
 * validation, the defaults and the JSON Schema (schema/sluice.schema.json, `npm run docs`).
 * Trigger, output and connection sections come from each connector's options.ts.
 */
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox'
import { OneOf, Strict } from '../sdk/schema.js'
import type { ConnectorDefinition } from '../sdk/index.js'

export const NAME_PATTERN = '^[A-Za-z][A-Za-z0-9_-]{0,62}$'

export const httpSchema = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 7071, description: '0 picks a free port.' }),
    host: Type.String({ minLength: 1, default: '0.0.0.0', description: 'Address to listen on.' }),
    bodyLimit: Type.Integer({ minimum: 1024, maximum: 104857600, default: 1048576, description: 'Largest request body in bytes (413 above).' }),
    requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 600000, default: 30000, description: 'Longest time to receive a whole request (408 above).' }),
    keepAliveTimeoutMs: Type.Integer({ minimum: 100, maximum: 600000, default: 72000, description: 'How long an idle keep-alive connection stays open.' }),
    trustProxy: Type.Optional(
      Type.Union([Type.Boolean(), Type.String({ minLength: 1 })], {
        description:
          'Behind a reverse proxy: trust its X-Forwarded-* headers (fastify trustProxy): true, or the proxy addresses or CIDRs (comma-separated). With it set (not false) and no admin.key the admin API and dashboard are off.',
      }),
    ),
    direct: Type.Boolean({
      default: true,
      description:
        'Let worker hosts serve HTTP-triggered functions on connections the gateway hands them (no hop through the gateway per request); false: every request through the gateway.',
    }),
  },
  { ...Strict, description: 'The HTTP server: HTTP-triggered functions under /api, the admin API, /metrics and the dashboard.' },
)

export const adminSchema = Type.Object(
  {
    key: Type.Optional(
      Type.String({
        minLength: 16,
        description:
          'Admin key (x-sluice-key header). Without one the admin API answers only same-origin loopback requests (Host localhost, 127.0.0.1, [::1] or http.host; POSTs as application/json), and is off when http.trustProxy is set.',
      }),
    ),
  },
  { ...Strict, description: 'The admin API (/admin/...) and the dashboard.' },
)

export const storeSchema = Type.Object(
  {
    kind: OneOf(['sqlite', 'postgres'], {
      default: 'sqlite',
      description: 'sqlite: embedded, one instance. postgres: shared by several instances (needs url).',
    }),
    path: Type.String({ minLength: 1, default: '.sluice/state.db', description: 'SQLite file, relative to the project root.' }),
    url: Type.Optional(Type.String({ minLength: 1, description: 'postgres: connection URL, e.g. postgres://user:${PGPASSWORD}@db:5432/sluice.' })),
    schema: Type.Optional(
      Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', description: 'postgres: schema holding the tables (created and migrated at start). Default: sluice.' }),
    ),
    pool: Type.Optional(
      Type.Object(
        { max: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'Most connections this instance opens.' }) },
        { ...Strict, description: 'postgres: the connection pool.' },
      ),
    ),
  },
  { ...Strict, description: 'Where dead letters, timer leases and schedule status are kept.' },
)

export const instanceSchema = Type.Object(
  {
    id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
        description:
          "This gateway instance's id in the cluster registry, its default MQTT client ids and its Event Hubs owner id. Default: the SLUICE_INSTANCE_ID environment variable, else the host name (the pod name in Kubernetes). Give every instance its own.",
      }),
    ),
    heartbeatMs: Type.Integer({
      minimum: 200,
      maximum: 60000,
      default: 2000,
      description: 'How often the instance writes its heartbeat and report to the store.',
    }),
    expiryMs: Type.Integer({
      minimum: 1000,
      maximum: 600000,
      default: 10000,
      description:
        'An instance whose last heartbeat is older than this is dead: it drops out of GET /admin/instances and a live instance takes over its MQTT sessions. At least 3 heartbeats.',
    }),
  },
  { ...Strict, description: "This gateway instance's identity among the instances sharing a store (see docs/operations.md, Cluster)." },
)

export const workersSchema = Type.Object(
  {
    hosts: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'Worker-host processes. Default: the number of cores.' })),
    memoryMb: Type.Integer({ minimum: 64, maximum: 65536, default: 2048, description: 'Heap budget per worker host, shared by its instances.' }),
    maxInstancesPerHost: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Most function instances one worker host runs.' }),
    prewarm: Type.Integer({ minimum: 0, maximum: 64, default: 2, description: 'Blank isolates kept ready per host to cut cold starts.' }),
  },
  { ...Strict, description: 'The worker-host processes that run function instances.' },
)

export const logSchema = Type.Object(
  {
    level: OneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info', description: 'Lowest level written.' }),
  },
  { ...Strict, description: 'JSON logs on stdout.' },
)

export const batchSchema = Type.Object(
  {
    maxSize: Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: 'Most events per invocation.' }),
    maxWaitMs: Type.Integer({
      minimum: 0,
      maximum: 60000,
      default: 20,
      description:
        "Longest wait for a batch to fill, counted from the arrival of its oldest event (events that queued behind their key's running batch have waited already and go as soon as it finishes).",
    }),
  },
  { ...Strict, description: 'How events are grouped into one invocation (maxSize: 1 gives single events).' },
)

export const retrySchema = Type.Object(
  {
    maxAttempts: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 5,
      description: 'Attempts per event, the first included; after the last the event is dead-lettered.',
    }),
    backoff: OneOf(['fixed', 'exponential'], { default: 'exponential', description: 'Delay between attempts: fixed, or exponential (doubling, with jitter).' }),
    initialDelayMs: Type.Integer({ minimum: 0, maximum: 3600000, default: 200, description: 'Delay before the second attempt.' }),
    maxDelayMs: Type.Integer({ minimum: 0, maximum: 86400000, default: 30000, description: 'Longest delay between attempts.' }),
  },
  { ...Strict, description: 'What happens when an invocation fails.' },
)

export const scaleSchema = Type.Object(
  {
    min: Type.Integer({ minimum: 0, maximum: 1000, default: 0, description: 'Instances kept warm (0: scale to zero).' }),
    max: Type.Integer({ minimum: 1, maximum: 1000, default: 4, description: 'Most instances running at once.' }),
    idleTimeoutMs: Type.Integer({ minimum: 100, maximum: 86400000, default: 60000, description: 'Idle time before an instance above min is stopped.' }),
  },
  { ...Strict, description: 'How many instances of the function run at once.' },
)

function kindsObject(defs: readonly ConnectorDefinition[], pick: (d: ConnectorDefinition) => TSchema | undefined, description: string): TObject {
  const props: Record<string, TSchema> = {}
  for (const d of defs) {
    const s = pick(d)
    if (s) props[d.kind] = Type.Optional(s)
  }
  return Type.Object(props, { ...Strict, minProperties: 1, maxProperties: 1, description })
}

export function buildFunctionSchema(defs: readonly ConnectorDefinition[]) {
  return Type.Object(
    {
      code: Type.String({ minLength: 1, description: 'The function module (.ts or .js), relative to the project root.' }),
      trigger: kindsObject(defs, (d) => d.triggerSchema, 'What invokes the function: exactly one trigger kind with its options.'),
      batch: Type.Optional(batchSchema),
      retry: Type.Optional(retrySchema),
      timeoutMs: Type.Integer({ minimum: 1, maximum: 900000, default: 5000, description: 'Wall-clock deadline per invocation.' }),
      cpuTimeMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 900000, description: 'CPU time limit per invocation. Default: timeoutMs.' })),
      memoryMb: Type.Integer({ minimum: 8, maximum: 4096, default: 64, description: 'Heap limit of each instance.' }),
      scale: Type.Optional(scaleSchema),
      maxBacklog: Type.Integer({
        minimum: 1,
        maximum: 10000000,
        default: 10000,
        description: 'Events waiting before connectors are slowed (HTTP answers 429).',
      }),
      orderKey: Type.String({
        default: 'source',
        pattern: '^(source|none|(body|meta)(\\.[A-Za-z0-9_$-]+)+)$',
        description: 'Events with the same key run in order: source (topic, partition, queue), none, or a path such as body.station.',
      }),
      outputs: Type.Optional(
        Type.Record(
          Type.String({ pattern: NAME_PATTERN }),
          kindsObject(defs, (d) => d.outputSchema, 'Exactly one output kind with its options.'),
          {
            ...Strict,
            description: 'Output bindings by name, written with ctx.output(name, data) and confirmed before the input is acknowledged.',
          },
        ),
      ),
    },
    { ...Strict, description: 'One function: its code, trigger and limits.' },
  )
}

/** Keys every connection has besides its kind's own (load.ts composes them the same way). */
export const connectionCommonSchema = Type.Object({
  required: Type.Optional(
    Type.Boolean({
      default: false,
      description:
        'true: the gateway does not start while this connection is unreachable (fail fast). false: it starts without it, reports it down in /admin/health and keeps retrying with backoff.',
    }),
  ),
})

export function buildConfigSchema(defs: readonly ConnectorDefinition[]) {
  const connectionKinds = defs.filter((d) => d.connectionSchema !== undefined)
  const connection =
    connectionKinds.length === 0
      ? Type.Object({ kind: Type.String() })
      : Type.Union(
          connectionKinds.map((d) => Type.Composite([Type.Object({ kind: Type.Literal(d.kind) }), connectionCommonSchema, d.connectionSchema as TObject])),
        )
  return Type.Object(
    {
      $schema: Type.Optional(Type.String({ description: 'A JSON Schema reference for editors; sluice ignores it.' })),
      http: Type.Optional(httpSchema),
      admin: Type.Optional(adminSchema),
      store: Type.Optional(storeSchema),
      instance: Type.Optional(instanceSchema),
      workers: Type.Optional(workersSchema),
      log: Type.Optional(logSchema),
      connections: Type.Optional(
        Type.Record(Type.String({ pattern: NAME_PATTERN }), connection, {
          ...Strict,
          description: 'Broker connections by name; triggers and outputs name theirs with connection:.',
        }),
      ),
      functions: Type.Record(Type.String({ pattern: NAME_PATTERN }), buildFunctionSchema(defs), {
        ...Strict,
        minProperties: 1,
        description: 'The functions by name.',
      }),
    },
    {
      ...Strict,
      title: 'sluice gateway configuration',
      description: 'The YAML file sluice runs (`sluice start --config <file>`). ${VAR} reads the environment.',
    },
  )
}

export type BatchConfig = Static<typeof batchSchema>
export type RetryConfig = Static<typeof retrySchema>
export type ScaleConfig = Static<typeof scaleSchema>

/** A function's configuration after validation, with every default filled in. */
export interface FunctionConfig {
  name: string
  code: string
  /** Absolute path of the code file. */
  codePath: string
  trigger: { kind: string; options: Record<string, unknown>; connection?: string }
  batch: BatchConfig
  retry: RetryConfig
  timeoutMs: number
  cpuTimeMs: number
  memoryMb: number
  scale: ScaleConfig
  maxBacklog: number
  orderKey: string
  outputs: Record<string, { kind: string; options: Record<string, unknown>; connection?: string }>
}

export interface ConnectionConfig {
  name: string
  kind: string
  /** Fail the start while unreachable (connections.<name>.required); default false: start degraded and retry. */
  required?: boolean
  options: Record<string, unknown>
}

export interface GatewayConfig {
  /** Absolute path of the config file ('' when built in code). */
  file: string
  /** The project root: relative paths resolve against it. */
  root: string
  http: Static<typeof httpSchema>
  admin: Static<typeof adminSchema>
  store: Static<typeof storeSchema>
  /** Absent in configs built in code: the defaults apply (see src/cluster/identity.ts). */
  instance?: Static<typeof instanceSchema>
  workers: Required<Static<typeof workersSchema>>
  log: Static<typeof logSchema>
  connections: Record<string, ConnectionConfig>
  functions: Record<string, FunctionConfig>
}
