/**
 * Small items of issue 10 next to hot reload: `sluice invoke --data` gives the event a meta shaped
 * for the function's trigger (what src/sdk/function.ts promises), and `sluice start --help` tells
 * of --watch and SIGHUP.
 */
import { spawnSync } from 'node:child_process'
import { describe, expect, it, onTestFinished } from 'vitest'
import { invokeMeta } from '../../src/cli/invoke-meta.js'
import type { FunctionConfig } from '../../src/config/schema.js'
import { projectDir } from '../helpers/gateway.js'
import { sluiceArgs } from '../helpers/sluice-bin.js'

const sluice = (args: string[], cwd: string) =>
  spawnSync(process.execPath, [...sluiceArgs(), ...args], { cwd, encoding: 'utf8', timeout: 90_000, env: { ...process.env, NODE_OPTIONS: '' } })

const fn = (kind: string, options: Record<string, unknown>, connection?: string): FunctionConfig =>
  ({ name: 'f', trigger: { kind, options, ...(connection ? { connection } : {}) } }) as unknown as FunctionConfig

describe('sluice invoke: meta per trigger kind', () => {
  const now = '2026-01-02T03:04:05.000Z'
  it('shapes every kind as its connector would', () => {
    expect(invokeMeta(fn('mqtt', { topic: 'stations/+/telemetry/#', qos: 1 }), undefined, now, true)).toEqual({
      topic: 'stations/invoke/telemetry/invoke',
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
    })
    expect(invokeMeta(fn('mqtt', { topic: 'a', qos: 0 }), undefined, now, true)).toMatchObject({ qos: 0, packetId: null })
    expect(invokeMeta(fn('amqp', { queue: 'orders' }), undefined, now, true)).toEqual({
      queue: 'orders',
      exchange: '',
      routingKey: 'orders',
      redelivered: false,
      deliveryTag: 1,
      deliveryCount: 1,
      headers: {},
    })
    expect(invokeMeta(fn('kafka', { topics: ['t1', 't2'] }), undefined, now, true)).toEqual({
      topic: 't1',
      partition: 0,
      offset: 0,
      timestamp: Date.parse(now),
      key: null,
      headers: {},
    })
    const hub = { name: 'hub', kind: 'eventhubs', options: { eventHub: 'telemetry' } }
    expect(invokeMeta(fn('eventhubs', { consumerGroup: 'cg' }, 'hub'), hub, now, true)).toEqual({
      eventHub: 'telemetry',
      consumerGroup: 'cg',
      partitionId: '0',
      offset: '0',
      sequenceNumber: 0,
      enqueuedTimeUtc: now,
    })
    expect(invokeMeta(fn('http', { route: 'stations/{id}/{*rest}', methods: ['get', 'post'] }), undefined, now, true)).toEqual({
      method: 'POST',
      path: '/api/stations/',
      url: '/api/stations/',
      params: { id: '', rest: '' },
      query: {},
      headers: {},
      ip: '127.0.0.1',
    })
    expect(invokeMeta(fn('http', { route: 'x', methods: ['GET', 'POST'] }), undefined, now, false)).toMatchObject({ method: 'GET' })
    expect(invokeMeta(fn('timer', { schedule: '0 0 3 * * *' }), undefined, now, false)).toEqual({ schedule: '0 0 3 * * *', timezone: 'UTC', isPastDue: false })
  })

  it('runs an HTTP function with --data whose meta.query and meta.params are there', () => {
    const p = projectDir({
      'package.json': '{"name":"invoke-meta","private":true}\n',
      'gateway.yaml': `functions:
  station:
    code: functions/station.ts
    trigger: { http: { route: "stations/{id}", methods: [POST], auth: anonymous } }
  tick:
    code: functions/tick.ts
    trigger: { timer: { schedule: "0 0 3 * * *", timezone: Europe/Amsterdam } }
`,
      'functions/station.ts': `export default async (events: any[]) => ({ status: 200, body: { keys: Object.keys(events[0].meta.query), method: events[0].meta.method, id: events[0].meta.params.id, body: events[0].body } })\n`,
      'functions/tick.ts': `export default async (events: any[]) => ({ zone: events[0].meta.timezone, scheduledAt: typeof events[0].body.scheduledAt })\n`,
    })
    onTestFinished(() => p.cleanup())
    const r = sluice(['invoke', 'station', '--config', 'gateway.yaml', '--data', '{"n":1}'], p.dir)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout).value).toEqual({ status: 200, body: { keys: [], method: 'POST', id: '', body: { n: 1 } } })
    const t = sluice(['invoke', 'tick', '--config', 'gateway.yaml'], p.dir)
    expect(t.status).toBe(0)
    expect(JSON.parse(t.stdout).value).toEqual({ zone: 'Europe/Amsterdam', scheduledAt: 'string' })
  }, 240_000)
})

it('sluice start --help tells of --watch and SIGHUP', () => {
  const r = sluice(['start', '--help'], process.cwd())
  expect(r.status).toBe(0)
  expect(r.stdout).toContain('Usage: sluice start [--config FILE] [--watch]')
  expect(r.stdout).toMatch(/--watch\s+reload whenever the configuration or a function source file/)
  expect(r.stdout).toContain('SIGHUP')
})
