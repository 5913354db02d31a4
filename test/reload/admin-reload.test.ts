/**
 * POST /admin/reload on a running gateway: an invalid configuration is refused with every error
 * (file:line:col, key path, code) and changes nothing; a valid one applies what changed in place
 * and reports settings that need a restart; a removed function drains and leaves its unfinished
 * MQTT messages at the broker, which delivers them again once the function is back.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import type { FunctionInfo, ReloadResult } from '../../src/http/admin.js'
import { dropSession, publish } from '../connectors/mqtt/helpers.js'
import { waitFor } from '../helpers/gateway.js'
import { BROKER, doneLines, reloadProject, startFromFile, uid } from './helpers.js'

const HEAD = 'http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: { path: state.db }\n'

async function reload(url: string): Promise<{ status: number; body: ReloadResult }> {
  const r = await fetch(`${url}/admin/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  return { status: r.status, body: (await r.json()) as ReloadResult }
}

async function functions(url: string): Promise<FunctionInfo[]> {
  return ((await (await fetch(`${url}/admin/functions`)).json()) as { functions: FunctionInfo[] }).functions
}

const HELLO = `export default async () => ({ status: 200, body: 'hi' })\n`
/** One anonymous HTTP function running HELLO. */
const HELLO_YAML = `functions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
`

describe('POST /admin/reload', () => {
  it('refuses an invalid configuration with its errors and changes nothing', async () => {
    const yaml = HELLO_YAML
    const project = reloadProject(yaml, { 'functions/hello.ts': HELLO })
    const { gw } = await startFromFile(project)
    const before = await functions(gw.url)

    project.write(
      'gateway.yaml',
      `${HEAD}functions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
    batch: { maxSize: -1 }
  added:
    code: functions/missing.ts
    trigger: { http: { route: added, methods: [GET], auth: anonymous } }
`,
    )
    const r = await reload(gw.url)
    expect(r.status).toBe(422)
    expect(r.body.ok).toBe(false)
    expect(r.body.changed).toEqual({ added: [], removed: [], updated: [], restartRequired: [] })
    expect(r.body.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'SLUICE_ERR_CONFIG_TYPE', file: 'gateway.yaml', line: 8, path: 'functions.hello.batch.maxSize' }),
        expect.objectContaining({ code: 'SLUICE_ERR_FUNCTION_NOT_FOUND', file: 'gateway.yaml', line: 10 }),
      ]),
    )
    // The running function is as it was; its page says why the reload left it so.
    const [after] = await functions(gw.url)
    const { reloadError, ...running } = after as FunctionInfo
    expect(running).toEqual(before[0])
    expect(reloadError).toMatchObject({ code: 'SLUICE_ERR_CONFIG_TYPE' })
    expect((await fetch(`${gw.url}/api/hello`)).status).toBe(200)
    expect((await fetch(`${gw.url}/api/added`)).status).toBe(404)
  })

  it('applies settings in place, adds a function and reports what needs a restart', async () => {
    const yaml = `functions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
    scale: { min: 0, max: 2 }
`
    const project = reloadProject(yaml, {
      'functions/hello.ts': HELLO,
      'functions/second.ts': `export default async () => ({ status: 201, body: 'second' })\n`,
    })
    const { gw, logs } = await startFromFile(project)
    const before = (await functions(gw.url))[0] as FunctionInfo
    const url = gw.url

    project.write(
      'gateway.yaml',
      `http: { port: 1, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: { path: state.db }\nfunctions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
    scale: { min: 0, max: 5 }
    timeoutMs: 4000
  second:
    code: functions/second.ts
    trigger: { http: { route: second, methods: [GET], auth: anonymous } }
`,
    )
    const r = await reload(url)
    expect(r).toEqual({
      status: 200,
      body: { ok: true, changed: { added: ['second'], removed: [], updated: ['hello'], restartRequired: ['http.port'] }, errors: [] },
    })
    const hello = (await functions(url)).find((f) => f.name === 'hello') as FunctionInfo
    expect(hello.scale.max).toBe(5)
    expect(hello.limits.timeoutMs).toBe(4000)
    // Same code: same version, loaded at start; its HTTP route never went away.
    expect(hello.version).toBe(before.version)
    expect(hello.loadedAt).toBe(before.loadedAt)
    expect(logs.lines.filter((l) => l.function === 'hello' && /trigger (stopped|started)/.test(String(l.msg)))).toEqual([])
    expect(logs.find(/^reload: http\.port changed/)).toHaveLength(1)
    // The port did not move.
    expect(gw.url).toBe(url)
    expect(await (await fetch(`${url}/api/second`)).text()).toBe('second')

    // Nothing changed since: an empty reload, still reporting the port.
    expect((await reload(url)).body).toEqual({ ok: true, changed: { added: [], removed: [], updated: [], restartRequired: ['http.port'] }, errors: [] })
  })

  it('keeps the counts of a function it restarts (a maxBacklog change)', async () => {
    const yaml = HELLO_YAML
    const project = reloadProject(yaml, { 'functions/hello.ts': HELLO })
    const { gw, logs } = await startFromFile(project)
    for (let i = 0; i < 3; i++) expect((await fetch(`${gw.url}/api/hello`)).status).toBe(200)
    const before = (await functions(gw.url))[0] as FunctionInfo
    expect(before.counts.invocations).toBe(3)

    project.write('gateway.yaml', `${HEAD}${yaml}    maxBacklog: 50\n`)
    const r = await reload(gw.url)
    expect(r.body.changed.updated).toEqual(['hello'])
    // It was restarted (its trigger stopped and started again), not updated in place.
    expect(logs.lines.filter((l) => l.function === 'hello' && /trigger (stopped|started)/.test(String(l.msg))).length).toBeGreaterThan(0)
    const after = (await functions(gw.url))[0] as FunctionInfo
    expect(after.counts.invocations).toBe(3)
    expect(after.counts.eventsDone).toBe(before.counts.eventsDone)
    expect((await fetch(`${gw.url}/api/hello`)).status).toBe(200)
    expect(((await functions(gw.url))[0] as FunctionInfo).counts.invocations).toBe(4)
  })

  it('restarts only the connector of a function whose trigger changed', async () => {
    const id = uid('t')
    const [t1, t2, t3] = ['one', 'two', 'three'].map((x) => `sluice-reload/${id}/${x}`)
    const [ca, cb] = [uid('ta'), uid('tb')]
    for (const c of [ca, cb]) onTestFinished(() => dropSession(BROKER, c))
    const yaml = (topicA: string) => `connections:
  broker: { kind: mqtt, url: ${BROKER} }
functions:
  a:
    code: functions/rec.ts
    trigger: { mqtt: { connection: broker, topic: ${topicA}, qos: 1, clientId: ${ca} } }
  b:
    code: functions/rec.ts
    trigger: { mqtt: { connection: broker, topic: ${t3}, qos: 1, clientId: ${cb} } }
`
    const rec = `export default async function (events: Array<{ body: { n: number } }>, ctx: { log: { info(...a: unknown[]): void } }) {
  for (const e of events) ctx.log.info('done v1 ' + e.body.n)
}
`
    const project = reloadProject(yaml(t1 as string), { 'functions/rec.ts': rec })
    const { gw, logs } = await startFromFile(project)
    await publish(BROKER, t1 as string, [{ n: 1 }])
    await publish(BROKER, t3 as string, [{ n: 1 }])
    await waitFor(() => doneLines(logs.lines, 'a').length === 1 && doneLines(logs.lines, 'b').length === 1, 20_000, 'a and b run')

    project.write('gateway.yaml', HEAD + yaml(t2 as string))
    expect((await reload(gw.url)).body).toEqual({ ok: true, changed: { added: [], removed: [], updated: ['a'], restartRequired: [] }, errors: [] })
    await publish(BROKER, t1 as string, [{ n: 2 }])
    await publish(BROKER, t2 as string, [{ n: 3 }])
    await publish(BROKER, t3 as string, [{ n: 2 }])
    await waitFor(() => doneLines(logs.lines, 'a').length === 2 && doneLines(logs.lines, 'b').length === 2, 20_000, 'a on its new topic, b as before')
    expect(doneLines(logs.lines, 'a').map((d) => d.n)).toEqual([1, 3])
    // Same client id, so the same broker session: the new connector dropped the old filter.
    expect(logs.lines.find((l) => l.function === 'a' && l.msg === 'mqtt subscription changed; unsubscribed the old filter')).toMatchObject({
      old: t1,
      filter: t2,
    })
    const restarts = logs.lines.filter((l) => /^reload: trigger (stopped|started)$/.test(String(l.msg))).map((l) => `${String(l.function)} ${String(l.msg)}`)
    expect(restarts).toEqual(['a reload: trigger stopped', 'a reload: trigger started'])
  })

  it('drains a removed function and leaves its unfinished messages at the broker', async () => {
    const topic = `sluice-reload/${uid('d')}/in`
    const clientId = uid('drain')
    onTestFinished(() => dropSession(BROKER, clientId))
    const block = `connections:
  broker: { kind: mqtt, url: ${BROKER} }
functions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
`
    const slow = `  slow:
    code: functions/slow.ts
    trigger: { mqtt: { connection: broker, topic: ${topic}, qos: 1, clientId: ${clientId} } }
    batch: { maxSize: 1, maxWaitMs: 0 }
`
    const project = reloadProject(block + slow, {
      'functions/hello.ts': HELLO,
      'functions/slow.ts': `export default async function (events: Array<{ body: { n: number } }>, ctx: { log: { info(...a: unknown[]): void } }) {
  const end = Date.now() + 300
  while (Date.now() < end) {}
  for (const e of events) ctx.log.info('done v1 ' + e.body.n)
}
`,
    })
    const { gw, logs } = await startFromFile(project)
    await publish(
      BROKER,
      topic,
      [0, 1, 2, 3, 4, 5].map((n) => ({ n })),
    )
    await waitFor(() => doneLines(logs.lines, 'slow').length >= 1, 20_000, 'the first slow event')

    project.write('gateway.yaml', HEAD + block)
    const removed = await reload(gw.url)
    expect(removed.body).toMatchObject({ ok: true, changed: { removed: ['slow'] } })
    expect((await functions(gw.url)).map((f) => f.name)).toEqual(['hello'])
    const processed = doneLines(logs.lines, 'slow').map((d) => d.n)
    expect(processed.length).toBeLessThan(6)

    // Back again: the broker delivers what the removed function left unacknowledged.
    project.write('gateway.yaml', HEAD + block + slow)
    expect((await reload(gw.url)).body).toMatchObject({ ok: true, changed: { added: ['slow'] } })
    await waitFor(() => new Set(doneLines(logs.lines, 'slow').map((d) => d.n)).size === 6, 30_000, 'all six events processed')
    expect([...new Set(doneLines(logs.lines, 'slow').map((d) => d.n))].sort()).toEqual([0, 1, 2, 3, 4, 5])
  })
})
