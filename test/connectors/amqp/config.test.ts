/** AMQP connection, trigger and output options as the config loader sees them (no broker needed). */
import { describe, expect, it } from 'vitest'
import { issues, parse, useProject } from '../../config/parse-helpers.js'

useProject()

const config = (trigger: string, extra = '') => `connections:
  queue: { kind: amqp, url: "amqp://guest:guest@127.0.0.1:5672" }
functions:
  telemetry:
    code: functions/ok.ts
    trigger: { amqp: { connection: queue, ${trigger} } }
${extra}`

describe('amqp options', () => {
  it('fills in the defaults of connection and trigger', async () => {
    const { config: c } = await parse(config('queue: telemetry'))
    expect(c.connections.queue?.options).toEqual({ url: 'amqp://guest:guest@127.0.0.1:5672', heartbeatSeconds: 5, connectTimeoutMs: 10000 })
    expect(c.functions.telemetry?.trigger).toEqual({ kind: 'amqp', connection: 'queue', options: { connection: 'queue', queue: 'telemetry', prefetch: 256 } })
  })

  it('accepts a declared quorum queue with arguments, an exchange, bindings and an output', async () => {
    const { config: c } = await parse(
      config(
        'queue: telemetry, declare: { type: quorum, arguments: { x-max-length: 1000, x-overflow: reject-publish } }, exchange: { name: stations }, bindings: [{ routingKey: "stations.*.telemetry" }], deadLetterExchange: dlx',
        '    outputs:\n      alerts: { amqp: { connection: queue, routingKey: alerts, mandatory: true } }\n',
      ),
    )
    expect(c.functions.telemetry?.trigger.options).toMatchObject({
      declare: { type: 'quorum', durable: true, autoDelete: false, arguments: { 'x-max-length': 1000 } },
      exchange: { name: 'stations', type: 'topic', durable: true },
    })
    expect(c.functions.telemetry?.outputs.alerts).toMatchObject({
      kind: 'amqp',
      connection: 'queue',
      options: { connection: 'queue', routingKey: 'alerts', mandatory: true },
    })
  })

  it('rejects a misspelled key', async () => {
    const list = await issues(config('queue: telemetry, prefetsh: 10'))
    expect(list.map((i) => `${i.path} ${i.code}`)).toEqual(['functions.telemetry.trigger.amqp.prefetsh SLUICE_ERR_CONFIG_UNKNOWN_KEY'])
  })

  it('checks what the schema cannot express', async () => {
    const list = await issues(
      config('queue: amq.telemetry, declare: { type: quorum, durable: false }, bindings: [{ routingKey: x }], deadLetterRoutingKey: dead'),
    )
    expect(list.map((i) => `${i.path} ${i.code}`).sort()).toEqual([
      'functions.telemetry.trigger.amqp.bindings[0].exchange SLUICE_ERR_CONFIG_REQUIRED',
      'functions.telemetry.trigger.amqp.deadLetterRoutingKey SLUICE_ERR_CONFIG_TYPE',
      'functions.telemetry.trigger.amqp.declare.durable SLUICE_ERR_CONFIG_TYPE',
      'functions.telemetry.trigger.amqp.queue SLUICE_ERR_CONFIG_TYPE',
    ])
  })

  it('rejects a url that is not amqp:// and a missing queue', async () => {
    const list = await issues(config('prefetch: 0').replace('amqp://guest', 'http://guest'))
    expect(list.map((i) => `${i.path} ${i.code}`).sort()).toEqual([
      'connections.queue.url SLUICE_ERR_CONFIG_TYPE',
      'functions.telemetry.trigger.amqp.prefetch SLUICE_ERR_CONFIG_TYPE',
      'functions.telemetry.trigger.amqp.queue SLUICE_ERR_CONFIG_REQUIRED',
    ])
  })
})
