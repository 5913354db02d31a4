import {
  httpEvent,
  invocationFailure,
  SluiceError,
  toReply,
  type Connector,
  type ConnectorContext,
  type HttpRequestInfo,
  type TriggerSpec,
} from '../../src/sdk/index.js'
import type { HttpTriggerOptions } from './options.js'

/** `stations/{id}` -> `/api/stations/:id`; `files/{*path}` -> `/api/files/*`. */
export function routeUrl(route: string): string {
  return `/api/${route
    .split('/')
    .map((seg) => seg.replace(/^\{\*[A-Za-z0-9_]*\}$/, '*').replace(/\{([A-Za-z0-9_]+)\}/g, ':$1'))
    .join('/')}`
}

/**
 * HTTP trigger: one route under /api per function. Each request is one event and one invocation
 * (batches of one, no retries: the caller sees the error and decides), answered with what the
 * function returns.
 */
export class HttpConnector implements Connector {
  private stopped = false
  /** The name of the route's last {*name} wildcard, if it has one. */
  private readonly wildcard: string | undefined

  constructor(private readonly spec: TriggerSpec<HttpTriggerOptions, never>) {
    this.wildcard = /\{\*([A-Za-z0-9_]*)\}$/.exec(spec.trigger.route)?.[1]
  }

  async start(ctx: ConnectorContext): Promise<void> {
    const { functionName, trigger } = this.spec
    const source = `http://${functionName}`
    if (!ctx.http) throw new SluiceError('SLUICE_ERR_CONNECTOR_START', 'the HTTP connector needs the gateway HTTP server')
    ctx.http.route({
      methods: trigger.methods,
      url: routeUrl(trigger.route),
      auth: trigger.auth,
      // A worker host may take the request's connection and build the same event itself.
      direct: this.wildcard === undefined ? { source } : { source, wildcard: this.wildcard },
      handle: async (req: HttpRequestInfo, signal: AbortSignal) => {
        if (this.stopped) throw new SluiceError('SLUICE_ERR_HTTP_SHUTTING_DOWN', 'the gateway is shutting down')
        const r = await ctx.invoke([httpEvent(req, source, this.wildcard)], { signal })
        if (!r.ok) throw invocationFailure(r, functionName)
        return toReply(r.value, functionName, r.invocationId)
      },
    })
    ctx.setHealth(true)
  }

  async stop(): Promise<void> {
    this.stopped = true
  }
}
