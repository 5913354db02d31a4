import type { FastifyInstance } from 'fastify'
import { SluiceError, toInfo } from '../errors.js'
import type { InvocationResult, Outcome, TriggerEvent } from '../sdk/index.js'
import type { DeadLetter, DeadLetterQuery, FunctionKey, StoreHealth } from '../store/store.js'
import { invocationLogs, type InvocationRecord } from '../router/stats.js'
import type { HostInfo } from '../sandbox/pool.js'
import type { ClusterView } from '../cluster/types.js'

export interface ConnectionHealth {
  function: string
  kind: string
  connection?: string
  up: boolean
  detail?: string
}

export interface HealthReport {
  status: 'up' | 'starting' | 'degraded' | 'stopping'
  connections: ConnectionHealth[]
  hosts: Array<Pick<HostInfo, 'id' | 'up' | 'pid' | 'instances' | 'restarts'>>
  /** The state store: while it is down nothing that needs it is acknowledged (status degraded). */
  store?: StoreHealth
}

export interface FunctionInfo {
  name: string
  trigger: { kind: string; connection?: string; options: Record<string, unknown> }
  /** The code file as configured. */
  code: string
  outputs: string[]
  batch: { maxSize: number; maxWaitMs: number }
  scale: { min: number; max: number; idleTimeoutMs: number }
  retry: { maxAttempts: number; backoff: 'fixed' | 'exponential'; initialDelayMs: number; maxDelayMs: number }
  limits: { timeoutMs: number; cpuTimeMs: number; memoryMb: number; maxBacklog: number }
  orderKey: string
  instances: { total: number; busy: number; idle: number }
  backlog: number
  inflight: number
  /** eventsDone/eventsDead: final outcomes of delivered events; events: events run (each attempt, sync included). */
  /** `direct`: HTTP requests worker hosts answered on connections handed to them (counted in the others too). */
  counts: { invocations: number; failures: number; events: number; eventsDone: number; eventsDead: number; retries: number; coldStarts: number; direct: number }
  latencyMs?: { p50: number; p99: number }
  lastColdStartMs?: number
  /** The code version running for new batches: the short hash of its bundle. */
  version: string
  /** When that version was loaded (ISO time): at start or by a reload. */
  loadedAt: string
  /** Instances per code version; more than one while a previous version's instances drain. */
  versions: Record<string, number>
  /** The latest reload could not load this function (its code does not compile, or a setting is invalid): `version` keeps running. */
  reloadError?: { code: string; message: string; at: string }
}

/** One problem of a reload: a config issue (with file:line:col and key path) or an error applying it. */
export interface ReloadIssue {
  code: string
  message: string
  file?: string
  line?: number
  col?: number
  path?: string
  function?: string
}

/**
 * The answer of a reload (POST /admin/reload, SIGHUP, --watch). `ok: false` with config issues:
 * nothing changed. `restartRequired` lists settings (http.port, store.kind...) whose change waits
 * for a restart; everything else listed in `changed` was applied.
 */
export interface ReloadResult {
  ok: boolean
  changed: { added: string[]; removed: string[]; updated: string[]; restartRequired: string[] }
  errors: ReloadIssue[]
}

/** What the admin routes need from the gateway. */
export interface AdminApi {
  health(): HealthReport
  functions(): FunctionInfo[]
  function(name: string): (FunctionInfo & { recent: InvocationRecord[] }) | undefined
  invoke(name: string, events: TriggerEvent[]): Promise<InvocationResult>
  listDeadLetters(q: DeadLetterQuery): Promise<DeadLetter[]>
  getDeadLetter(id: string): Promise<DeadLetter | undefined>
  deleteDeadLetter(id: string): Promise<boolean>
  replayDeadLetter(id: string): Promise<{ outcome: Outcome }>
  createFunctionKey(fn: string, name: string): Promise<string>
  listFunctionKeys(fn: string): Promise<FunctionKey[]>
  deleteFunctionKey(fn: string, name: string): Promise<boolean>
  hosts(): HostInfo[]
  metrics(): Promise<{ contentType: string; body: string }>
  /** Reads the configuration file and the function code again and applies what changed (see ReloadResult). */
  reload(): Promise<ReloadResult>
  /** The instances sharing the store (GET /admin/instances). */
  instances(): Promise<ClusterView>
}

const eventSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 512 },
    key: { type: 'string', maxLength: 1024 },
    source: { type: 'string', maxLength: 2048 },
    time: { type: 'string', maxLength: 64 },
    body: {},
    meta: { type: 'object' },
  },
  additionalProperties: false,
} as const

/** Letters replayed at once by POST /admin/dead-letters/replay. */
const REPLAY_CONCURRENCY = 8

const nameParam = { type: 'object', properties: { name: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_-]{0,62}$' } }, required: ['name'] } as const

const invocationParams = {
  type: 'object',
  properties: { name: nameParam.properties.name, id: { type: 'string', minLength: 1, maxLength: 128 } },
  required: ['name', 'id'],
} as const

function notFound(fn: string): SluiceError {
  return new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${fn}`, { context: { function: fn } })
}

/**
 * `GET /livez`: 200 `ok` while the event loop answers. No auth and no data: the Kubernetes
 * liveness probe (readiness stays on /admin/health, which knows about connections).
 */
export function registerLiveness(app: FastifyInstance): void {
  app.get('/livez', async (_req, reply) => reply.header('cache-control', 'no-store').type('text/plain; charset=utf-8').send('ok'))
}

/** Registers /admin/* and /metrics, all behind `guard`. */
export function registerAdminRoutes(app: FastifyInstance, api: AdminApi, guard: (req: import('fastify').FastifyRequest) => Promise<void>): void {
  app.register(async (admin) => {
    admin.addHook('onRequest', guard)

    admin.get('/admin/health', async (_req, reply) => {
      const h = api.health()
      return reply.code(h.status === 'up' ? 200 : 503).send(h)
    })

    admin.get('/admin/functions', async () => ({ functions: api.functions() }))

    admin.get<{ Params: { name: string } }>('/admin/functions/:name', { schema: { params: nameParam } }, async (req) => {
      const f = api.function(req.params.name)
      if (!f) throw notFound(req.params.name)
      return f
    })

    // One recent invocation with all the log lines it kept (the list above has a preview only).
    admin.get<{ Params: { name: string; id: string } }>('/admin/functions/:name/invocations/:id', { schema: { params: invocationParams } }, async (req) => {
      const f = api.function(req.params.name)
      if (!f) throw notFound(req.params.name)
      const record = f.recent.find((r) => r.invocationId === req.params.id)
      const logs = record && invocationLogs(record)
      if (!record || (!logs && (record.logLines ?? 0) > 0)) {
        throw new SluiceError(
          'SLUICE_ERR_FUNCTION_INVOCATION_NOT_FOUND',
          `function ${req.params.name} keeps no logs for invocation ${req.params.id}: ${record ? 'they were evicted to make room for newer ones' : 'it is not one of the recent invocations'}`,
          { context: { function: req.params.name } },
        )
      }
      return { ...record, logs: logs ?? record.logs }
    })

    admin.post<{ Params: { name: string }; Body: { events: Array<Partial<TriggerEvent>> } }>(
      '/admin/functions/:name/invoke',
      {
        schema: {
          params: nameParam,
          body: {
            type: 'object',
            properties: { events: { type: 'array', minItems: 1, maxItems: 10000, items: eventSchema } },
            required: ['events'],
            additionalProperties: false,
          },
        },
      },
      async (req) => {
        if (!api.function(req.params.name)) throw notFound(req.params.name)
        const now = new Date().toISOString()
        const events: TriggerEvent[] = req.body.events.map((e, i) => ({
          id: e.id ?? `${req.id}-${i}`,
          source: e.source ?? 'admin://invoke',
          time: e.time ?? now,
          body: e.body ?? null,
          meta: e.meta ?? {},
          ...(e.key !== undefined ? { key: e.key } : {}),
        }))
        return api.invoke(req.params.name, events)
      },
    )

    admin.get<{ Params: { name: string } }>('/admin/functions/:name/keys', { schema: { params: nameParam } }, async (req) => {
      if (!api.function(req.params.name)) throw notFound(req.params.name)
      return { keys: await api.listFunctionKeys(req.params.name) }
    })

    admin.post<{ Params: { name: string }; Body: { name?: string } | undefined }>(
      '/admin/functions/:name/keys',
      {
        schema: {
          params: nameParam,
          body: { type: ['object', 'null'], properties: { name: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } }, additionalProperties: false },
        },
      },
      async (req, reply) => {
        if (!api.function(req.params.name)) throw notFound(req.params.name)
        const keyName = req.body?.name ?? 'default'
        const key = await api.createFunctionKey(req.params.name, keyName)
        return reply.code(201).send({ function: req.params.name, name: keyName, key })
      },
    )

    admin.delete<{ Params: { name: string; key: string } }>('/admin/functions/:name/keys/:key', async (req, reply) => {
      const ok = await api.deleteFunctionKey(req.params.name, req.params.key)
      if (!ok) throw new SluiceError('SLUICE_ERR_HTTP_NOT_FOUND', `function ${req.params.name} has no key named ${req.params.key}`)
      return reply.code(204).send()
    })

    admin.get<{ Querystring: { function?: string; code?: string; limit?: number; after?: string } }>(
      '/admin/dead-letters',
      {
        schema: {
          querystring: {
            type: 'object',
            properties: {
              function: { type: 'string' },
              code: { type: 'string' },
              limit: { type: 'integer', minimum: 1, maximum: 1000 },
              after: { type: 'string' },
            },
            additionalProperties: false,
          },
        },
      },
      async (req) => {
        const q: DeadLetterQuery = {}
        if (req.query.function) q.function = req.query.function
        if (req.query.code) q.code = req.query.code
        if (req.query.limit) q.limit = req.query.limit
        if (req.query.after) q.after = req.query.after
        const items = await api.listDeadLetters(q)
        return { items, next: items.length === (q.limit ?? 100) ? items[items.length - 1]?.id : undefined }
      },
    )

    admin.get<{ Params: { id: string } }>('/admin/dead-letters/:id', async (req) => {
      const dl = await api.getDeadLetter(req.params.id)
      if (!dl) throw new SluiceError('SLUICE_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter with id ${req.params.id}`)
      return dl
    })

    admin.delete<{ Params: { id: string } }>('/admin/dead-letters/:id', async (req, reply) => {
      if (!(await api.deleteDeadLetter(req.params.id))) throw new SluiceError('SLUICE_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter with id ${req.params.id}`)
      return reply.code(204).send()
    })

    // Replays every letter matching the filter (at most `limit`, oldest first), a few at a time.
    // Answers once every replayed event has its outcome; a letter that fails again is replaced
    // by a new one, as with the single replay.
    admin.post<{ Body: { function?: string; code?: string; limit?: number } | undefined }>(
      '/admin/dead-letters/replay',
      {
        schema: {
          body: {
            type: ['object', 'null'],
            properties: {
              function: { type: 'string', minLength: 1 },
              code: { type: 'string', minLength: 1 },
              limit: { type: 'integer', minimum: 1, maximum: 1000 },
            },
            additionalProperties: false,
          },
        },
      },
      async (req) => {
        const q: DeadLetterQuery = { limit: req.body?.limit ?? 100 }
        if (req.body?.function) q.function = req.body.function
        if (req.body?.code) q.code = req.body.code
        const letters = await api.listDeadLetters(q)
        const results: Array<{ id: string; function: string; outcome?: Outcome; error?: { code: string; message: string } }> = []
        let next = 0
        const worker = async () => {
          while (next < letters.length) {
            const dl = letters[next++] as DeadLetter
            try {
              results.push({ id: dl.id, function: dl.function, ...(await api.replayDeadLetter(dl.id)) })
            } catch (e) {
              const { code, message } = toInfo(e, 'SLUICE_ERR_INTERNAL')
              results.push({ id: dl.id, function: dl.function, error: { code, message } })
            }
          }
        }
        await Promise.all(Array.from({ length: Math.min(REPLAY_CONCURRENCY, letters.length) }, worker))
        const done = results.filter((r) => r.outcome?.status === 'done').length
        return { matched: letters.length, done, results }
      },
    )

    admin.post<{ Params: { id: string } }>('/admin/dead-letters/:id/replay', async (req) => {
      const r = await api.replayDeadLetter(req.params.id)
      return { id: req.params.id, ...r }
    })

    admin.get('/admin/hosts', async () => ({ hosts: api.hosts() }))

    // 200 when the new configuration was applied (restartRequired may still list settings), 422
    // with its errors when it was refused (nothing changed), 409 while the gateway cannot reload.
    admin.post('/admin/reload', async (_req, reply) => {
      const r = await api.reload()
      const unavailable = r.errors.some((e) => e.code === 'SLUICE_ERR_RELOAD_UNAVAILABLE')
      return reply.code(r.ok ? 200 : unavailable ? 409 : 422).send(r)
    })

    admin.get('/admin/instances', async () => api.instances())

    admin.get('/metrics', async (_req, reply) => {
      const m = await api.metrics()
      return reply.type(m.contentType).send(m.body)
    })
  })
}
