/**
 * Per-source lag: a connector with the optional LagReporter ability feeds the `sluice_source_lag`
 * gauge (per partition, or a total) and the dashboard feed (summed per function); one that throws
 * is left out. Also checks that /metrics has every series the operations docs list.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig } from '../../src/config/load.js'
import { Gateway } from '../../src/gateway.js'
import type { LiveSnapshot } from '../../src/http/live-types.js'
import { createLogger } from '../../src/log.js'
import { Strict, Type, reportsLag, type Connector, type ConnectorContext, type ConnectorDefinition, type LagReporter } from '../../src/sdk/index.js'
import { LogCapture, projectDir } from '../helpers/gateway.js'
import { openSse } from '../helpers/sse.js'

/** A source that delivers nothing and reports the lag it was configured with. */
class LagSource implements Connector, LagReporter {
  constructor(private readonly mode: string) {}
  async start(ctx: ConnectorContext): Promise<void> {
    ctx.setHealth(true)
  }
  async stop(): Promise<void> {}
  lag(): Record<string, number> | number {
    if (this.mode === 'partitions') return { 'telemetry/0': 5, 'telemetry/1': 7 }
    if (this.mode === 'total') return 12
    throw new Error('lag unknown')
  }
}

const lagConnector: ConnectorDefinition<{ mode: string }> = {
  kind: 'lagtest',
  triggerSchema: Type.Object({ mode: Type.String() }, Strict),
  createTrigger: (spec) => new LagSource(spec.trigger.mode),
}

describe('source lag', () => {
  const project = projectDir({ 'functions/noop.ts': 'export default async () => null\n' })
  let gw: Gateway
  beforeAll(async () => {
    const connectors = [...CONNECTORS, lagConnector as ConnectorDefinition]
    const yaml = `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: state.db }
functions:
  lg-parts:
    code: functions/noop.ts
    trigger: { lagtest: { mode: partitions } }
  lg-total:
    code: functions/noop.ts
    trigger: { lagtest: { mode: total } }
  lg-broken:
    code: functions/noop.ts
    trigger: { lagtest: { mode: broken } }
  lg-http:
    code: functions/noop.ts
    trigger: { http: { route: noop, methods: [GET], auth: anonymous } }
`
    const loaded = await parseConfig(yaml, join(project.dir, 'gateway.yaml'), { connectors, root: project.dir, env: {} })
    gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, connectors, logger: createLogger('warn', new LogCapture()) })
  })
  afterAll(async () => {
    await gw?.stop({ timeoutMs: 10_000 })
    project.cleanup()
  })

  it('detects the ability with a type guard', () => {
    expect(reportsLag(new LagSource('total'))).toBe(true)
    expect(reportsLag({ start: async () => undefined, stop: async () => undefined })).toBe(false)
  })

  it('exports sluice_source_lag per partition, or as a total with an empty source label', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    expect(text).toContain('# TYPE sluice_source_lag gauge')
    expect(text).toMatch(/^sluice_source_lag\{function="lg-parts",kind="lagtest",connection="",source="telemetry\/0"\} 5$/m)
    expect(text).toMatch(/^sluice_source_lag\{function="lg-parts",kind="lagtest",connection="",source="telemetry\/1"\} 7$/m)
    expect(text).toMatch(/^sluice_source_lag\{function="lg-total",kind="lagtest",connection="",source=""\} 12$/m)
    expect(text).not.toMatch(/^sluice_source_lag\{function="lg-(broken|http)"/m)
    expect(text).toMatch(/^sluice_connection_up\{function="lg-parts",kind="lagtest",connection=""\} 1$/m)
  })

  it('has every series the operations docs list', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]))
    const expected: Record<string, string> = {
      sluice_invocations_total: 'counter',
      sluice_event_failures_total: 'counter',
      sluice_retries_total: 'counter',
      sluice_dead_letters_total: 'counter',
      sluice_invocation_duration_seconds: 'histogram',
      sluice_batch_size: 'histogram',
      sluice_wait_seconds: 'histogram',
      sluice_backlog_events: 'gauge',
      sluice_waiting_requests: 'gauge',
      sluice_instances: 'gauge',
      sluice_worker_host_restarts_total: 'counter',
      sluice_worker_hosts_up: 'gauge',
      sluice_connection_up: 'gauge',
      sluice_source_lag: 'gauge',
    }
    for (const [name, type] of Object.entries(expected)) expect(types.get(name), name).toBe(type)
  })

  it("gives the dashboard feed each function's total lag", async () => {
    const r = await openSse(`${gw.url}/admin/events`)
    try {
      const snap = await r.next<LiveSnapshot>('snapshot')
      const lag = Object.fromEntries(snap.functions.map((f) => [f.name, f.lag]))
      expect(lag).toEqual({ 'lg-parts': 12, 'lg-total': 12, 'lg-broken': undefined, 'lg-http': undefined })
    } finally {
      r.close()
    }
  })
})
