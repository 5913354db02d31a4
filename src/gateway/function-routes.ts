/**
 * The routes of HTTP-triggered functions under /api. fastify cannot add or remove routes once it
 * listens, so one catch-all route per method hands every /api request to this table, which
 * functions join and leave at any time (a trigger starting after the port is bound, hot reload).
 * It uses find-my-way, fastify's own router, so paths, parameters and trailing slashes match
 * exactly as a fastify route would.
 */
import { setMaxListeners } from 'node:events'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import FindMyWay, { type HTTPMethod } from 'find-my-way'
import { SluiceError } from '../errors.js'
import { functionKeyRefusal } from '../http/auth.js'
import { errorBody, sendError, sendFunctionReply } from '../http/server.js'
import type { HttpRouteDef } from '../sdk/index.js'
import type { FunctionKeyCache } from './function-keys.js'

/** Methods an HTTP trigger may list (connectors/http/options.ts). */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const satisfies readonly HTTPMethod[]

/**
 * A signal that aborts when the client goes away: its connection closes. One per connection, not
 * per request (an AbortController costs microseconds): a request on a connection that closed
 * before its reply was written has nobody left to answer, and the signal is only listened to
 * while a request waits for an instance, so a later close aborts nothing that finished. (Not
 * the request's 'close': since Node 16 an IncomingMessage emits 'close' as soon as its body has
 * been read, which aborted every queued request with a body.)
 */
const gone = new WeakMap<Socket, AbortSignal>()
const CLIENT_GONE = () => new SluiceError('SLUICE_ERR_HTTP_TIMEOUT', 'the client went away')

function clientGone(socket: Socket | null): AbortSignal {
  if (socket === null) return AbortSignal.abort(CLIENT_GONE())
  let signal = gone.get(socket)
  if (signal === undefined) {
    const abort = new AbortController()
    signal = abort.signal
    // Every request of the connection waiting for an instance listens (pipelining): no warning.
    setMaxListeners(0, signal)
    gone.set(socket, signal)
    if (socket.destroyed) abort.abort(CLIENT_GONE())
    else socket.once('close', () => abort.abort(CLIENT_GONE()))
  }
  return signal
}

interface Entry {
  fn: string
  def: HttpRouteDef
}

export interface FunctionRoutesOptions {
  keys: FunctionKeyCache
  /** Digest of admin.key: the admin key opens every function route too. */
  adminHash?: string
}

/** What direct HTTP (direct-http.ts) learns from the routes. */
export interface RouteWatcher {
  /** A request of `fn` was answered here (not by a worker host); its reply is not yet sent. */
  served(fn: string, reply: FastifyReply): void
  /** Function `fn`'s routes were removed. */
  removed(fn: string): void
}

export class FunctionRoutes {
  private readonly table = FindMyWay<FindMyWay.HTTPVersion.V1>({ ignoreTrailingSlash: true, maxParamLength: 500 })
  private readonly byFunction = new Map<string, Array<{ methods: HTTPMethod[]; url: string; def: HttpRouteDef }>>()
  private closing = false
  private watcher: RouteWatcher | undefined

  constructor(private readonly opts: FunctionRoutesOptions) {}

  watch(w: RouteWatcher): void {
    this.watcher = w
  }

  /** The (first) route of function `fn`. */
  routeOf(fn: string): HttpRouteDef | undefined {
    return this.byFunction.get(fn)?.[0]?.def
  }

  /** The function and route that answer `method` on `url`, if any. */
  lookup(method: string, url: string): { fn: string; def: HttpRouteDef } | undefined {
    const found = this.table.find(method as HTTPMethod, url)
    return found ? (found.store as Entry) : undefined
  }

  /** Installs the /api catch-all on the server. Call once, before it listens. */
  install(app: FastifyInstance): void {
    app.route({
      method: [...METHODS],
      url: '/api/*',
      // HEAD runs a function only when its route lists it.
      exposeHeadRoute: false,
      handler: (request, reply) => this.dispatch(request, reply),
    })
  }

  /**
   * Adds one route of function `fn`. Throws SLUICE_ERR_CONFIG_ROUTE when another function already
   * answers one of its methods on that path.
   */
  add(fn: string, def: HttpRouteDef): void {
    const methods = def.methods.map((m) => m.toUpperCase()) as HTTPMethod[]
    try {
      this.table.on(methods, def.url, () => undefined, { fn, def } satisfies Entry)
    } catch (e) {
      throw new SluiceError('SLUICE_ERR_CONFIG_ROUTE', `function ${fn}: route ${methods.join(',')} ${def.url} is already taken: ${(e as Error).message}`, {
        cause: e,
        context: { function: fn },
      })
    }
    const list = this.byFunction.get(fn) ?? []
    list.push({ methods, url: def.url, def })
    this.byFunction.set(fn, list)
  }

  /** Removes every route of function `fn` (it stops answering at once). */
  remove(fn: string): void {
    for (const r of this.byFunction.get(fn) ?? []) this.table.off(r.methods, r.url)
    this.byFunction.delete(fn)
    this.watcher?.removed(fn)
  }

  /** From now on every /api request is answered 503 (the gateway is stopping). */
  close(): void {
    this.closing = true
  }

  /** Methods some function answers on `path` (for 405 and Allow). */
  allowed(path: string): string[] {
    return METHODS.filter((m) => this.table.find(m, path) !== null)
  }

  private async dispatch(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const url = request.url
    const q = url.indexOf('?')
    const path = q < 0 ? url : url.slice(0, q)
    if (this.closing) return sendError(reply, request, new SluiceError('SLUICE_ERR_HTTP_SHUTTING_DOWN', 'the gateway is shutting down'))
    const found = this.table.find(request.method as HTTPMethod, url)
    if (!found) {
      const allow = this.allowed(url)
      if (allow.length === 0) {
        return reply.code(404).send(errorBody('SLUICE_ERR_HTTP_NOT_FOUND', `no route for ${request.method} ${path}`, request.id))
      }
      void reply.header('allow', allow.join(', '))
      return sendError(reply, request, new SluiceError('SLUICE_ERR_HTTP_METHOD_NOT_ALLOWED', `${path} answers ${allow.join(', ')}, not ${request.method}`))
    }
    const { fn, def } = found.store as Entry
    try {
      if (def.auth === 'function') await this.authorize(fn, request)
      const out = await def.handle(
        {
          method: request.method,
          url,
          path,
          params: { ...found.params } as Record<string, string>,
          query: request.query as Record<string, string | string[]>,
          headers: request.headers,
          body: request.body,
          ip: request.ip,
          requestId: request.id,
        },
        clientGone(reply.raw.socket),
      )
      this.watcher?.served(fn, reply)
      return sendFunctionReply(reply, out)
    } catch (e) {
      return sendError(reply, request, e)
    }
  }

  private async authorize(fn: string, request: FastifyRequest): Promise<void> {
    const refused = functionKeyRefusal(fn, request, await this.opts.keys.get(fn), this.opts.adminHash)
    if (refused) throw refused
  }
}
