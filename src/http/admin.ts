import type { FastifyInstance } from 'fastify'
import { SluiceError } from '../errors.js'
import type { InvocationResult, Outcome, TriggerEvent } from '../sdk/index.js'
import type { DeadLetter, DeadLetterQuery, FunctionKey } from '../store/store.js'
import type { InvocationRecord } from '../router/stats.js'
import type { HostInfo } from '../sandbox/pool.js'

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
}

export interface FunctionInfo {
  name: string
  trigger: { kind: string; connection?: string; options: Record<string, unknown> }
  outputs: string[]
  batch: { maxSize: number; maxWaitMs: number }
  scale: { min: number; max: number; idleTimeoutMs: number }
  instances: { total: number; busy: number; idle: number }
  backlog: number
  inflight: number
  counts: { invocations: number; failures: number; eventsDone: number; eventsDead: number; retries: number; coldStarts: number }
  latencyMs?: { p50: number; p99: number }
  lastColdStartMs?: number
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

const nameParam = { type: 'object', properties: { name: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_-]{0,62}$' } }, required: ['name'] } as const

function notFound(fn: string): SluiceError {
  return new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${fn}`, { context: { function: fn } })
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

    admin.post<{ Params: { id: string } }>('/admin/dead-letters/:id/replay', async (req) => {
      const r = await api.replayDeadLetter(req.params.id)
      return { id: req.params.id, ...r }
    })

    admin.get('/admin/hosts', async () => ({ hosts: api.hosts() }))

    admin.get('/metrics', async (_req, reply) => {
      const m = await api.metrics()
      return reply.type(m.contentType).send(m.body)
    })
  })
}
