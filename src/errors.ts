/**
 * The one registry of sluice error codes. Codes are stable and never reused: users, dashboards
 * and tests match on `code`, never on `instanceof` (errors cross isolate and process boundaries
 * and lose their prototype on the way). `docs/errors.md` is generated from this table and a test
 * keeps the two in step (`npm run docs`).
 */

export interface ErrorSpec {
  /** Whether trying the same thing again later can succeed. */
  readonly retriable: boolean
  /** HTTP status used when the error answers an HTTP request. */
  readonly status: number
  /** One line: what happened. */
  readonly summary: string
  /** What the user should do about it. */
  readonly hint: string
}

const spec = (retriable: boolean, status: number, summary: string, hint: string): ErrorSpec => ({
  retriable,
  status,
  summary,
  hint,
})

export const ERRORS = {
  // Configuration
  SLUICE_ERR_CONFIG_INVALID: spec(false, 400, 'The configuration has errors.', 'Fix every error listed with it; each names file:line:col and the key path.'),
  SLUICE_ERR_CONFIG_FILE: spec(false, 400, 'The configuration file cannot be read.', 'Check the --config path and its permissions.'),
  SLUICE_ERR_CONFIG_YAML: spec(false, 400, 'The configuration is not valid YAML.', 'Fix the syntax at the position given.'),
  SLUICE_ERR_CONFIG_ALIAS_LIMIT: spec(
    false,
    400,
    'The YAML expands too many aliases (possible alias bomb).',
    'Remove the alias chain; sluice refuses documents that expand aliases more than a few hundred times.',
  ),
  SLUICE_ERR_CONFIG_DUPLICATE_KEY: spec(false, 400, 'A key appears twice in one mapping.', 'Keep one of the two keys.'),
  SLUICE_ERR_CONFIG_UNKNOWN_KEY: spec(
    false,
    400,
    'A key is not part of the configuration schema.',
    'Check the spelling against docs/configuration.md or the JSON Schema in schema/sluice.schema.json.',
  ),
  SLUICE_ERR_CONFIG_REQUIRED: spec(false, 400, 'A required key is missing.', 'Add the key named in the message.'),
  SLUICE_ERR_CONFIG_TYPE: spec(false, 400, 'A value has the wrong type or is out of range.', 'Change the value to what the message says is expected.'),
  SLUICE_ERR_CONFIG_ENV: spec(
    false,
    400,
    'A ${VAR} reference names an unset environment variable.',
    'Set the variable, or give a default with ${VAR:-default}.',
  ),
  SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER: spec(false, 400, 'A trigger kind is not one this gateway knows.', 'Use one of the trigger kinds the message lists.'),
  SLUICE_ERR_CONFIG_UNKNOWN_OUTPUT: spec(false, 400, 'An output kind is not one this gateway knows.', 'Use one of the output kinds the message lists.'),
  SLUICE_ERR_CONFIG_TRIGGER_COUNT: spec(
    false,
    400,
    'A function must have exactly one trigger kind.',
    'Keep one trigger per function; bind a second trigger with a second function entry.',
  ),
  SLUICE_ERR_CONFIG_UNKNOWN_CONNECTION_KIND: spec(
    false,
    400,
    'A connection kind is not one this gateway knows.',
    'Use one of the connection kinds the message lists.',
  ),
  SLUICE_ERR_CONFIG_CONNECTION: spec(
    false,
    400,
    'A trigger or output names a connection that does not exist or has another kind.',
    'Declare the connection under connections: with the matching kind.',
  ),
  SLUICE_ERR_CONFIG_CRON: spec(
    false,
    400,
    'A timer schedule is not a valid cron expression.',
    'Use 6 fields with seconds: "sec min hour day month weekday", e.g. "0 */5 * * * *".',
  ),
  SLUICE_ERR_CONFIG_TIMEZONE: spec(false, 400, 'A timezone is not a known IANA zone name.', 'Use a name such as Europe/Amsterdam or UTC.'),
  SLUICE_ERR_CONFIG_ROUTE: spec(false, 400, 'An HTTP route is invalid or used by two functions.', 'Give each HTTP function its own route and method set.'),
  SLUICE_ERR_CONFIG_NAME: spec(false, 400, 'A function or connection name is not allowed.', 'Use letters, digits, "-" and "_" only, starting with a letter.'),
  SLUICE_ERR_CONFIG_TOPIC: spec(
    false,
    400,
    'An MQTT topic filter or shared-subscription group is not valid.',
    'Use whole levels: + alone in a level, # alone in the last level; set share: instead of writing $share/ in the topic.',
  ),
  SLUICE_ERR_CONFIG_QOS: spec(
    false,
    400,
    'An MQTT trigger asks for QoS 2, which sluice cannot deliver at-least-once.',
    'Use qos: 1 (at-least-once; duplicates are possible, so make the function idempotent) or qos: 0.',
  ),
  SLUICE_ERR_RELOAD_UNAVAILABLE: spec(
    true,
    409,
    'The gateway cannot reload now: it is starting or stopping, or it runs a configuration that was not read from a file.',
    'Reload once the gateway is up (GET /admin/health), or restart it; a gateway built in code has no file to read again.',
  ),
  SLUICE_ERR_RELOAD_APPLY: spec(
    true,
    500,
    "A reload validated, but part of it could not be applied (e.g. a new function's trigger did not start); the rest was applied.",
    'Read the error listed with it, fix the cause (broker, route, connection) and reload again; functions that did not start are not running.',
  ),

  // Functions (user code)
  SLUICE_ERR_FUNCTION_NOT_FOUND: spec(
    false,
    404,
    'The function does not exist, or its code file is missing.',
    'Check the function name, or the code: path in the configuration.',
  ),
  SLUICE_ERR_FUNCTION_COMPILE: spec(false, 400, 'The function code does not compile.', 'Fix the error at the file position given; run `sluice validate`.'),
  SLUICE_ERR_FUNCTION_NODE_BUILTIN: spec(
    false,
    400,
    'The function imports a Node.js built-in module (node:fs, path, http...), which functions cannot use.',
    'Remove the import: a function has no file system, network or process. Read input from the events it receives, write through outputs (ctx.output), and log with ctx.log.',
  ),
  SLUICE_ERR_FUNCTION_INVOCATION_NOT_FOUND: spec(
    false,
    404,
    'The gateway keeps no logs for that invocation: the id is wrong, or the invocation is older than the recent ones whose logs are kept.',
    'List recent invocations with GET /admin/functions/:name and pick an id from there; logs of older invocations are in the gateway log (source: function).',
  ),
  SLUICE_ERR_FUNCTION_EXPORT: spec(
    false,
    400,
    'The function module has no default export that is a function.',
    'Add `export default async function (events, ctx) { ... }`.',
  ),
  SLUICE_ERR_FUNCTION_TYPE: spec(
    false,
    400,
    'The function code has TypeScript type errors (found by `sluice validate --typecheck`).',
    "Fix the errors at the file positions given; types are checked with the project's own TypeScript and tsconfig.json.",
  ),
  SLUICE_ERR_FUNCTION_THREW: spec(
    true,
    500,
    'The function threw an error or returned a rejected promise.',
    'Read the message and logs of the invocation; the event is retried per the retry policy.',
  ),
  SLUICE_ERR_FUNCTION_EVENT_FAILED: spec(
    true,
    500,
    'The function reported this event as failed ({ failed: [ids] } or { failed: [{ id, reason }] }; the message carries the reason).',
    'The event is retried alone per the retry policy; see the invocation logs for why the function failed it.',
  ),
  SLUICE_ERR_FUNCTION_TIMEOUT: spec(
    true,
    504,
    'The function ran past its timeoutMs deadline and was stopped.',
    'Make the function faster, use smaller batches, or raise timeoutMs.',
  ),
  SLUICE_ERR_FUNCTION_CPU_LIMIT: spec(
    true,
    504,
    'The function used more CPU time than cpuTimeMs allows and was stopped.',
    'Make the function cheaper or raise cpuTimeMs.',
  ),
  SLUICE_ERR_FUNCTION_MEMORY_LIMIT: spec(
    true,
    500,
    'The function used more heap than memoryMb allows and was stopped.',
    'Process smaller batches or raise memoryMb.',
  ),
  SLUICE_ERR_FUNCTION_RESULT_TOO_LARGE: spec(
    false,
    500,
    'The function returned (or output) more data than the result limit allows.',
    'Return less data; send bulk data through an output binding in several messages.',
  ),
  SLUICE_ERR_FUNCTION_RESULT_INVALID: spec(
    false,
    500,
    'The function returned a value that cannot be serialized as JSON (or nests more than 512 levels deep), or an invalid { failed } list.',
    'Return plain JSON data; `failed` must be an array of event ids or of { id, reason } objects (the reason goes into the dead letter).',
  ),
  SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN: spec(
    false,
    500,
    'The function wrote to an output that is not configured.',
    "Declare the output under the function's outputs:, or fix its name.",
  ),
  SLUICE_ERR_FUNCTION_CRASHED: spec(
    true,
    500,
    "The function's sandbox died while it ran (its worker host crashed or its isolate was lost).",
    'The batch is retried on another instance; if it repeats, the function is likely the cause (native crash or huge allocation).',
  ),

  // Sandbox and workers
  SLUICE_ERR_SANDBOX_UNAVAILABLE: spec(
    true,
    503,
    'No worker host is available to run the function.',
    'Wait for worker hosts to restart; check the logs for why they exit.',
  ),
  SLUICE_ERR_SANDBOX_INSTANCE_START: spec(
    true,
    500,
    'A function instance could not be started.',
    "Check memoryMb and the function's module-level code; see the cause.",
  ),
  SLUICE_ERR_SANDBOX_CLOSED: spec(true, 503, 'The sandbox is shutting down.', 'Retry against a running gateway.'),

  // Router and delivery
  SLUICE_ERR_ROUTER_CLOSED: spec(
    true,
    503,
    'The router is shutting down and accepts no new events.',
    'The source keeps the event; it is delivered again after restart.',
  ),
  SLUICE_ERR_ROUTER_OVERLOADED: spec(true, 429, "The function's backlog is full.", 'Retry after the Retry-After delay, raise scale.max, or raise maxBacklog.'),
  SLUICE_ERR_EVENT_INVALID: spec(
    false,
    400,
    'An event is not valid (it is not JSON data, or misses an id).',
    'Send events as JSON objects; in admin invoke each event needs a body.',
  ),
  SLUICE_ERR_EVENT_TOO_DEEP: spec(
    false,
    400,
    "An event's payload nests arrays and objects more than 512 levels deep; it was dead-lettered without running the function.",
    'Flatten the payload at its producer. The dead letter keeps the payload as text (meta.bodyEncoding: json-text when the gateway re-serialized it); replaying it hands the function that text.',
  ),
  SLUICE_ERR_EVENT_TOO_LARGE: spec(
    false,
    413,
    'An event is larger than the event limit (6 MiB of JSON); it was dead-lettered without running the function.',
    'Send smaller messages, or a reference to the data (a URL, a blob name) instead of the data. The dead letter keeps the payload (its first 16 MiB).',
  ),
  SLUICE_ERR_EVENT_REDELIVERY_LIMIT: spec(
    false,
    500,
    'The source delivered the event again after its earlier deliveries used up retry.maxAttempts without an outcome (the gateway crashed while it held the event).',
    'Inspect the dead letter: the event may crash the gateway; fix the cause, then replay it.',
  ),
  SLUICE_ERR_OUTPUT_FAILED: spec(true, 502, 'An output binding could not confirm a message.', 'Check the output connection; the input event is retried.'),
  SLUICE_ERR_DEAD_LETTER_NOT_FOUND: spec(false, 404, 'No dead letter has that id.', 'List dead letters with GET /admin/dead-letters.'),
  SLUICE_ERR_DEAD_LETTER_REPLAYING: spec(
    true,
    409,
    'The dead letter is being replayed already (by this or another gateway instance sharing the store).',
    'Wait for that replay to finish; the letter is removed when it succeeds.',
  ),

  // Store
  SLUICE_ERR_STORE_OPEN: spec(false, 500, 'The state store cannot be opened.', 'Check store.path (the folder must be writable) or the store URL.'),
  SLUICE_ERR_STORE_UNAVAILABLE: spec(
    false,
    400,
    'The configured store kind is unknown.',
    'Use store.kind: sqlite (one instance) or postgres (several instances).',
  ),
  SLUICE_ERR_STORE_URL: spec(
    false,
    400,
    'store.url is not a PostgreSQL connection URL.',
    'Write it as postgres://user:password@host:5432/database (percent-encode special characters in the password).',
  ),
  SLUICE_ERR_STORE_UNREACHABLE: spec(
    true,
    503,
    'The PostgreSQL server named in store.url cannot be reached (host not found, connection refused or timed out).',
    'Check the host and port in store.url and that PostgreSQL runs and accepts TCP connections from this machine.',
  ),
  SLUICE_ERR_STORE_AUTH: spec(
    false,
    401,
    'PostgreSQL refused the user or password in store.url.',
    "Check the user and password in store.url (or the server's pg_hba.conf rules for this client).",
  ),
  SLUICE_ERR_STORE_DATABASE_MISSING: spec(
    false,
    404,
    'The database named in store.url does not exist on the PostgreSQL server.',
    'Create it (createdb <name>) or fix the database name at the end of store.url.',
  ),
  SLUICE_ERR_STORE_SCHEMA_NEWER: spec(
    false,
    500,
    "The store's schema was migrated by a newer sluice than this one.",
    'Run the newer sluice version (every instance sharing a store must run a version that knows its schema); sluice never downgrades a schema.',
  ),
  SLUICE_ERR_STORE_MIGRATION: spec(
    false,
    500,
    'A schema migration of the store failed; nothing of it was applied.',
    'Read the cause (permissions: the user needs CREATE on the database or the schema); fix it and start again.',
  ),
  SLUICE_ERR_STORE_DOWN: spec(
    true,
    503,
    'The state store is unavailable while the gateway runs (its server stopped or the connection broke); writes that need it fail and nothing that depends on them is acknowledged.',
    'Bring the database back; sluice reconnects with backoff and retries dead-letter writes until they land.',
  ),
  // Cluster (several instances sharing a store)
  SLUICE_ERR_INSTANCE_CONFIG: spec(
    false,
    400,
    'The instance settings are inconsistent: instance.expiryMs is shorter than three heartbeats (instance.heartbeatMs), or SLUICE_INSTANCE_ID is not a valid instance id.',
    'Raise instance.expiryMs to at least 3 x instance.heartbeatMs (defaults: 2000 and 10000), so one slow heartbeat does not declare a live instance dead; give SLUICE_INSTANCE_ID letters, digits, dots, dashes and underscores only.',
  ),
  SLUICE_ERR_INSTANCE_DUPLICATE_ID: spec(
    false,
    409,
    "Another live gateway process uses this instance id: a gateway that finds it heartbeating in the store at start refuses to start (nothing consumed); two that run under one id anyway (one was cut off from the store meanwhile) overwrite each other's registry row and take MQTT sessions, Event Hubs partitions and timer leases from each other.",
    'Give every instance its own id (instance.id, the SLUICE_INSTANCE_ID variable, or distinct host names); in Kubernetes run a StatefulSet, whose pod names are unique. A restart after a crash is not refused: it starts once the old process stops heartbeating (instance.expiryMs).',
  ),
  SLUICE_ERR_CLUSTER_TAKEOVER_FAILED: spec(
    true,
    503,
    'A live instance could not drain the MQTT session of a dead instance (broker unreachable, the dead instance came back, or a step timed out); the session stays at the broker.',
    "Nothing is lost: the takeover is tried again at the next heartbeat while the instance stays dead. Check the broker and the log line's cause.",
  ),
  SLUICE_ERR_CLUSTER_MQTT_UNSHARED: spec(
    false,
    400,
    'Several live instances run an MQTT trigger without share: each receives every message (or, with one fixed clientId, they take the session from each other).',
    'Set share: <group> on the trigger so the broker splits the messages among instances (connectors/mqtt/README.md, Several instances).',
  ),
  SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT: spec(
    false,
    400,
    'A function relies on per-key order (orderKey is not none) from a source that does not keep it across several live instances (MQTT $share on round-robin brokers, AMQP competing consumers without single active consumer).',
    'Use a source feature that keeps per-key order across instances (see docs/operations.md, Order with several instances), run one instance, or set orderKey: none if order does not matter.',
  ),

  // Connectors
  SLUICE_ERR_CONNECTOR_START: spec(true, 503, 'A connector could not start.', 'Check the connection settings and that the broker is reachable.'),
  SLUICE_ERR_CONNECTOR_TOPOLOGY: spec(
    false,
    500,
    'A queue, exchange or binding could not be declared, or does not exist, at the broker.',
    'Check the names; a queue or exchange that exists with other settings (durable, type, arguments) must be declared the same way or deleted first.',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_CONNECTION: spec(
    true,
    503,
    'The Event Hubs namespace cannot be reached, or the connection to it broke or timed out.',
    'Check the Endpoint of the connection string and the network; sluice keeps retrying with backoff.',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_UNAUTHORIZED: spec(
    false,
    401,
    'Event Hubs refused the credentials of the connection string.',
    'Check SharedAccessKeyName and SharedAccessKey, and that the policy grants Listen (triggers) or Send (outputs).',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_NOT_FOUND: spec(
    false,
    404,
    'The event hub, one of its partitions or the consumer group does not exist.',
    'Check eventHub in the connection and consumerGroup in the trigger.',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST: spec(
    true,
    409,
    'Another consumer took over an Event Hubs partition (another gateway instance, or a receiver with a higher owner level); this instance stopped processing it and does not checkpoint it any more.',
    'Nothing when several instances share the consumer group; otherwise find the other consumer of the consumer group.',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT: spec(
    true,
    503,
    'A checkpoint or a partition ownership could not be read or written in the checkpoint store.',
    'Check the checkpoint store (the blob container and its connection string, or the sluice store); events after the last checkpoint are delivered again.',
  ),
  SLUICE_ERR_CONNECTOR_EVENTHUBS_MESSAGE_TOO_LARGE: spec(
    false,
    413,
    'An output value does not fit in one Event Hubs message.',
    'Write smaller values (1 MB per message on standard namespaces).',
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION: spec(
    true,
    503,
    'The Kafka brokers cannot be reached, or the connection to them broke or timed out.',
    'Check brokers: (host:port), the network and ssl:; sluice keeps retrying with backoff.',
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED: spec(
    false,
    401,
    'Kafka refused the SASL credentials, or the client is not authorized for the topic or group.',
    'Check sasl: (mechanism, username, password) and the ACLs for the topic and the consumer group.',
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_PRODUCE: spec(
    true,
    502,
    'Kafka did not acknowledge a produced message (acks: all).',
    'Check that the output topic exists (or auto-creation is on) and the brokers are healthy; the input event is retried.',
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_COMMIT: spec(
    true,
    503,
    'An offset commit was refused or failed, usually because a rebalance moved the partition.',
    "Nothing to do after a rebalance: the partition's new owner reads on from the last commit (events since then run again). If it repeats, check the brokers and sessionTimeoutMs.",
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_RECORD: spec(
    false,
    400,
    'A Kafka record could not be turned into an event (it reached no function); it was dead-lettered with its raw bytes and its offset committed.',
    'Inspect the dead letter (body as text, or base64 with meta.encoding: base64) and fix the producer; replay it once the function can take it.',
  ),
  SLUICE_ERR_CONNECTOR_KAFKA_TOPIC_NOT_FOUND: spec(
    false,
    404,
    'A topic of a Kafka trigger does not exist on the cluster (or the client is not allowed to describe it); the trigger does not create topics.',
    "Create the topic (kafka-topics.sh --create, or your platform's tooling) with the partitions you need, or fix topic: in the trigger; then start the gateway again.",
  ),

  // HTTP surface
  SLUICE_ERR_HTTP_BAD_REQUEST: spec(false, 400, 'The request is malformed.', 'Fix the request as the message says.'),
  SLUICE_ERR_HTTP_BAD_JSON: spec(false, 400, 'The request body is not valid JSON.', 'Send a valid JSON body, or another content type.'),
  SLUICE_ERR_HTTP_PROTO_POISONING: spec(false, 400, 'The JSON body contains __proto__ or constructor.prototype keys.', 'Remove those keys from the body.'),
  SLUICE_ERR_HTTP_BODY_TOO_LARGE: spec(false, 413, 'The request body is larger than http.bodyLimit.', 'Send a smaller body or raise http.bodyLimit.'),
  SLUICE_ERR_HTTP_UNSUPPORTED_MEDIA: spec(
    false,
    415,
    'The request content type is not supported.',
    'Send application/json, text/* or application/octet-stream.',
  ),
  SLUICE_ERR_HTTP_UNAUTHORIZED: spec(
    false,
    401,
    'The key is missing or wrong.',
    'Send the function key in x-functions-key (or the admin key in x-sluice-key).',
  ),
  SLUICE_ERR_HTTP_FORBIDDEN: spec(
    false,
    403,
    'The admin API answers on loopback only when no admin key is set.',
    'Call from the gateway machine, or set admin.key and send it in x-sluice-key.',
  ),
  SLUICE_ERR_HTTP_NOT_FOUND: spec(false, 404, 'No route matches the request.', 'Check the URL; HTTP functions are under /api/<route>.'),
  SLUICE_ERR_HTTP_TIMEOUT: spec(true, 408, 'The request took longer than the server allows.', 'Send the request faster, or raise http.requestTimeoutMs.'),
  SLUICE_ERR_HTTP_SHUTTING_DOWN: spec(true, 503, 'The gateway is shutting down.', 'Retry against another instance or after restart.'),
  SLUICE_ERR_HTTP_MISDIRECTED: spec(
    true,
    421,
    'The connection was handed to a worker host that serves functions directly; this request needs a connection of its own.',
    'Open a new connection for it (the reply closes this one); HTTP clients and browsers do so when they retry.',
  ),
  SLUICE_ERR_HTTP_METHOD_NOT_ALLOWED: spec(
    false,
    405,
    'The route exists but does not answer this HTTP method.',
    "Use one of the methods in the Allow header, or add the method to the trigger's methods: list.",
  ),
  SLUICE_ERR_HTTP_PORT_IN_USE: spec(
    false,
    500,
    'The HTTP port is already in use, so the gateway did not start (and consumed nothing).',
    'Stop the other process on that port (often another sluice gateway still running), or set http.port to a free port.',
  ),
  SLUICE_ERR_HTTP_CROSS_SITE: spec(
    false,
    403,
    'A cross-site or foreign-host request to the admin API was refused (no admin key is set).',
    'Call the admin API from the gateway machine with a loopback Host (localhost, 127.0.0.1, [::1]) and no foreign Origin, sending JSON bodies as application/json; or set admin.key.',
  ),
  SLUICE_ERR_HTTP_ADMIN_DISABLED: spec(
    false,
    403,
    'The admin API is off: http.trustProxy is set and no admin key is configured, so callers cannot be told apart.',
    'Set admin.key (e.g. admin: { key: ${SLUICE_ADMIN_KEY} }) and send it in x-sluice-key.',
  ),

  SLUICE_ERR_INTERNAL: spec(
    true,
    500,
    'An unexpected error inside the gateway.',
    'Retry; if it repeats, report it with the request id from the answer and the gateway logs.',
  ),

  // CLI
  SLUICE_ERR_CLI_USAGE: spec(false, 2, 'The command line is not valid.', 'Run `sluice --help`.'),
  SLUICE_ERR_CLI_REMOTE: spec(
    true,
    1,
    'The running gateway could not be reached or answered with an error.',
    'Check --url and that the gateway runs; pass the admin key with --key or SLUICE_ADMIN_KEY.',
  ),
  SLUICE_ERR_CLI_TYPESCRIPT_MISSING: spec(
    false,
    1,
    '`sluice validate --typecheck` found no TypeScript installed in the project.',
    'Install it in the project folder: npm install --save-dev typescript.',
  ),
  SLUICE_ERR_CLI_INIT_EXISTS: spec(
    false,
    1,
    '`sluice init` would overwrite files that exist; it wrote nothing.',
    'Run it for a new or empty folder (`sluice init my-project`), or move the files it lists out of the way.',
  ),
  SLUICE_ERR_CLI_NEW_EXISTS: spec(
    false,
    1,
    '`sluice new`: a function of that name is in the configuration already, or its code file exists; nothing was changed.',
    'Pick another name, or remove the old function from the YAML and its file first.',
  ),
  SLUICE_ERR_CLI_NEW_LAYOUT: spec(
    false,
    1,
    '`sluice new` cannot add to the configuration as it is written (functions: or connections: is not a block mapping, or the file is not a YAML mapping); nothing was changed.',
    'Write functions: and connections: with one entry per line (block style), or add the function by hand.',
  ),
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

/** Context attached to an error, shown in logs and API answers. */
export interface ErrorContext {
  function?: string
  connection?: string
  path?: string
  [key: string]: unknown
}

/** The serialized form of an error: what crosses process and isolate boundaries and HTTP. */
export interface ErrorInfo {
  code: ErrorCode
  message: string
  retriable: boolean
  context?: ErrorContext
}

export class SluiceError extends Error {
  readonly code: ErrorCode
  readonly retriable: boolean
  readonly context: ErrorContext

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; context?: ErrorContext; retriable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'SluiceError'
    this.code = code
    this.retriable = opts.retriable ?? ERRORS[code].retriable
    this.context = opts.context ?? {}
  }

  get status(): number {
    return ERRORS[this.code].status
  }

  get hint(): string {
    return ERRORS[this.code].hint
  }

  toJSON(): ErrorInfo {
    const info: ErrorInfo = { code: this.code, message: this.message, retriable: this.retriable }
    if (Object.keys(this.context).length > 0) info.context = this.context
    return info
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code)
}

/** True when `err` carries a sluice code (optionally a given one), whatever its prototype. */
export function hasCode(err: unknown, code?: ErrorCode): err is { code: ErrorCode; message: string } {
  if (typeof err !== 'object' || err === null) return false
  const c = (err as { code?: unknown }).code
  return isErrorCode(c) && (code === undefined || c === code)
}

/** Rebuilds a SluiceError from its serialized form (after IPC or HTTP). */
export function fromInfo(info: ErrorInfo): SluiceError {
  return new SluiceError(info.code, info.message, { retriable: info.retriable, context: info.context ?? {} })
}

/**
 * Turns anything thrown into ErrorInfo. Errors without a sluice code become `fallback`, keeping
 * their message: dependency errors are mapped at the boundary where they are caught.
 */
export function toInfo(err: unknown, fallback: ErrorCode = 'SLUICE_ERR_FUNCTION_THREW'): ErrorInfo {
  if (err instanceof SluiceError) return err.toJSON()
  if (hasCode(err)) {
    const e = err as { code: ErrorCode; message: string; retriable?: unknown; context?: ErrorContext }
    const info: ErrorInfo = {
      code: e.code,
      message: String(e.message),
      retriable: typeof e.retriable === 'boolean' ? e.retriable : ERRORS[e.code].retriable,
    }
    if (e.context) info.context = e.context
    return info
  }
  const message = err instanceof Error ? err.message : String(err)
  return { code: fallback, message, retriable: ERRORS[fallback].retriable }
}
