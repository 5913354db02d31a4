/**
 * A second gateway on an HTTP port already in use (issue 9): it fails with
 * SLUICE_ERR_HTTP_PORT_IN_USE naming the port, before its AMQP trigger consumes anything (the
 * messages stay ready in RabbitMQ), and `sluice start` says so in two lines without a stack trace.
 * Real RabbitMQ (the machine's node), real gateways; the CLI runs from dist/ (build first).
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { hasCode } from '../../src/errors.js'
import { Client, connections, queueCounts, RABBIT_URL, unique } from '../connectors/amqp/broker.js'
import { projectDir, startGateway, type TestGateway } from '../helpers/gateway.js'

const BIN = resolve('bin/sluice.js')
const HELLO = `export default async () => ({ hello: true })\n`
const RECORD = `export default async (events) => { for (const e of events) console.log('got', e.id) }\n`

const cleanups: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A durable queue holding `n` messages, deleted after the test. */
async function queueWith(n: number): Promise<string> {
  const queue = unique('port-in-use')
  const c = await Client.open()
  cleanups.push(async () => {
    await c.ch.deleteQueue(queue).catch(() => undefined)
    await c.close()
  })
  await c.ch.assertQueue(queue, { durable: true })
  await c.publish(
    Array.from({ length: n }, (_, i) => ({ n: i })),
    { queue },
  )
  return queue
}

function amqpYaml(connection: string, queue: string): string {
  return `connections:
  ${connection}: { kind: amqp, url: "${RABBIT_URL}" }
functions:
  piu-consumer:
    code: functions/record.js
    trigger: { amqp: { connection: ${connection}, queue: ${queue} } }
`
}

describe('a gateway on an HTTP port in use', () => {
  it('fails with SLUICE_ERR_HTTP_PORT_IN_USE naming the port, and consumes nothing', async () => {
    const first: TestGateway = await startGateway({
      yaml: `functions:\n  piu-hello:\n    code: functions/hello.js\n    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }\n`,
      files: { 'functions/hello.js': HELLO },
    })
    cleanups.push(() => first.stop())
    const port = Number(new URL(first.url).port)
    const queue = await queueWith(5)
    const connection = unique('piu').replace(/-/g, '_')

    const err = await startGateway({ http: { port }, yaml: amqpYaml(connection, queue), files: { 'functions/record.js': RECORD } }).then(
      (t) => {
        cleanups.push(() => t.stop())
        return undefined
      },
      (e: unknown) => e,
    )
    expect(hasCode(err, 'SLUICE_ERR_HTTP_PORT_IN_USE')).toBe(true)
    expect((err as Error).message).toContain(`port ${port}`)
    expect((err as Error).message).toMatch(/another sluice gateway/)

    expect(await queueCounts(queue)).toEqual({ ready: 5, unacked: 0 })
    expect((await connections()).filter((c) => c.name.includes(connection))).toEqual([])
    // The first gateway is untouched.
    expect((await fetch(`${first.url}/api/hello`)).status).toBe(200)
  })

  it('sluice start prints the coded error and what to do, without a stack trace, and exits 1', async () => {
    const first: TestGateway = await startGateway({
      yaml: `functions:\n  piu-hello2:\n    code: functions/hello.js\n    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }\n`,
      files: { 'functions/hello.js': HELLO },
    })
    cleanups.push(() => first.stop())
    const port = Number(new URL(first.url).port)
    const queue = await queueWith(3)
    const connection = unique('piucli').replace(/-/g, '_')
    const project = projectDir({
      'gateway.yaml': `http: { port: ${port}, host: 127.0.0.1 }\nworkers: { hosts: 1 }\nstore: { path: .sluice/state.db }\n${amqpYaml(connection, queue)}`,
      'functions/record.js': RECORD,
    })
    cleanups.push(project.cleanup)

    const r = spawnSync(process.execPath, [BIN, 'start', '--config', 'gateway.yaml'], { cwd: project.dir, encoding: 'utf8', timeout: 60_000 })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('[SLUICE_ERR_HTTP_PORT_IN_USE]')
    expect(r.stderr).toContain(`port ${port}`)
    expect(r.stderr).toMatch(/what to do: .*another sluice gateway/)
    expect(r.stderr).not.toMatch(/^\s+at /m)
    expect(r.stderr).not.toContain('unexpected error')
    expect(await queueCounts(queue)).toEqual({ ready: 3, unacked: 0 })
  })
})
