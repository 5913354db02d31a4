/**
 * parseConfig end to end: YAML text -> positions -> schema validation -> semantic checks ->
 * function compilation, against real function files in a temp folder. Every error is checked by
 * its stable code, its file:line:col and its key path. ${VAR} substitution: env.test.ts.
 */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig, type ConfigIssue } from '../../src/config/load.js'
import { at, elsewhereDir, expectIssue, issue, issues, parse, projectRoot, telemetry, TIMER, useProject } from './parse-helpers.js'

useProject()

describe('a valid configuration', () => {
  it('gets every default', async () => {
    const { config, compiled, notes } = await parse(telemetry())
    expect(config.file).toBe(join(projectRoot(), 'gateway.yaml'))
    expect(config.root).toBe(projectRoot())
    expect(config.http).toEqual({ port: 7071, host: '0.0.0.0', bodyLimit: 1048576, requestTimeoutMs: 30000, keepAliveTimeoutMs: 72000, direct: true })
    expect(config.admin).toEqual({})
    expect(config.store).toEqual({ kind: 'sqlite', path: '.sluice/state.db' })
    expect(config.workers).toEqual({ hosts: availableParallelism(), memoryMb: 2048, maxInstancesPerHost: 500, prewarm: 2 })
    expect(config.log).toEqual({ level: 'info' })
    expect(config.connections).toEqual({})
    expect(config.functions.telemetry).toEqual({
      name: 'telemetry',
      code: 'functions/ok.ts',
      codePath: join(projectRoot(), 'functions/ok.ts'),
      trigger: { kind: 'timer', options: { schedule: '0 * * * * *', catchUp: 'none', runOnStartup: false, leaseMs: 10000 } },
      batch: { maxSize: 100, maxWaitMs: 20 },
      retry: { maxAttempts: 5, backoff: 'exponential', initialDelayMs: 200, maxDelayMs: 30000 },
      timeoutMs: 5000,
      cpuTimeMs: 5000,
      memoryMb: 64,
      scale: { min: 0, max: 4, idleTimeoutMs: 60000 },
      maxBacklog: 10000,
      orderKey: 'source',
      outputs: {},
    })
    expect([...compiled.keys()]).toEqual(['telemetry'])
    expect(compiled.get('telemetry')).toMatchObject({ file: join(projectRoot(), 'functions/ok.ts'), hash: expect.stringMatching(/^[0-9a-f]{16}$/) })
    expect(notes).toEqual([])
  })

  it('fills HTTP trigger defaults and keeps explicit values', async () => {
    const yaml = `http: { port: 8081, host: 127.0.0.1 }
workers: { hosts: 3 }
functions:
  station-status:
    code: functions/ok.ts
    trigger: { http: { route: "stations/{id}" } }
  nightly:
    code: functions/ok.ts
    trigger: { timer: { schedule: "0 0 3 * * *", timezone: Europe/Amsterdam, catchUp: latest } }
    batch: { maxSize: 1 }
    retry: { maxAttempts: 3, backoff: fixed }
    timeoutMs: 2000
    cpuTimeMs: 500
    memoryMb: 128
    scale: { min: 1, max: 8 }
    orderKey: body.station
`
    const { config } = await parse(yaml)
    expect(config.http).toMatchObject({ port: 8081, host: '127.0.0.1' })
    expect(config.workers.hosts).toBe(3)
    expect(config.functions['station-status']?.trigger).toEqual({
      kind: 'http',
      options: { route: 'stations/{id}', methods: ['GET', 'POST'], auth: 'function' },
    })
    expect(config.functions.nightly).toMatchObject({
      trigger: { kind: 'timer', options: { schedule: '0 0 3 * * *', timezone: 'Europe/Amsterdam', catchUp: 'latest', runOnStartup: false } },
      batch: { maxSize: 1, maxWaitMs: 20 },
      retry: { maxAttempts: 3, backoff: 'fixed', initialDelayMs: 200, maxDelayMs: 30000 },
      timeoutMs: 2000,
      cpuTimeMs: 500,
      memoryMb: 128,
      scale: { min: 1, max: 8, idleTimeoutMs: 60000 },
      orderKey: 'body.station',
    })
  })

  it('is deeply frozen', async () => {
    const { config } = await parse(telemetry())
    const fn = config.functions.telemetry
    for (const o of [
      config,
      config.http,
      config.store,
      config.workers,
      config.functions,
      fn,
      fn?.batch,
      fn?.retry,
      fn?.scale,
      fn?.trigger,
      fn?.trigger.options,
    ]) {
      expect(Object.isFrozen(o)).toBe(true)
    }
    // Test files are ES modules, so strict mode: writing to a frozen object throws.
    expect(() => {
      ;(fn as { batch: { maxSize: number } }).batch.maxSize = 1
    }).toThrow(TypeError)
    expect(() => {
      ;(config.functions as Record<string, unknown>).other = {}
    }).toThrow(TypeError)
    expect(fn?.batch.maxSize).toBe(100)
  })

  it('resolves a relative code path against root and keeps an absolute one', async () => {
    const abs = join(elsewhereDir(), 'abs-fn.ts')
    const yaml = `functions:
  rel:
    code: ./functions/../functions/ok.ts
    ${TIMER}
  abs:
    code: ${abs}
    ${TIMER}
`
    const { config, compiled } = await parse(yaml)
    expect(config.functions.rel?.codePath).toBe(join(projectRoot(), 'functions/ok.ts'))
    expect(config.functions.abs?.code).toBe(abs)
    expect(config.functions.abs?.codePath).toBe(abs)
    expect(compiled.get('abs')?.file).toBe(abs)
  })

  it('accepts the demo configuration config/gateway.yaml', async () => {
    const repo = resolve(import.meta.dirname, '../..')
    const file = join(repo, 'config/gateway.yaml')
    const { config, notes } = await parseConfig(readFileSync(file, 'utf8'), file, { connectors: CONNECTORS, root: repo, env: {}, compile: false })
    expect(Object.keys(config.functions).length).toBeGreaterThan(0)
    // admin.key is "${SLUICE_ADMIN_KEY}", unset here: left out, with a note.
    expect(config.admin.key).toBeUndefined()
    expect(notes.some((n) => n.includes('SLUICE_ADMIN_KEY'))).toBe(true)
  })

  it('accepts a handful of anchors and aliases', async () => {
    const yaml = `functions:
  a:
    code: functions/ok.ts
    ${TIMER}
    retry: &retry { maxAttempts: 3, backoff: fixed }
  b:
    code: functions/ok.ts
    ${TIMER}
    retry: *retry
`
    const { config } = await parse(yaml)
    expect(config.functions.b?.retry).toEqual(config.functions.a?.retry)
  })
})

describe('YAML errors', () => {
  it('reports bad syntax with its position', async () => {
    const unclosed = telemetry('    batch: [1, 2\n    retry: {}\n')
    const i = await issue(unclosed)
    expectIssue(i, 'SLUICE_ERR_CONFIG_YAML', '', at(unclosed, 'retry'))
    expect(i.message).toMatch(/end with a \]/)
    const misindented = 'functions:\n  telemetry:\n    code: functions/ok.ts\n   trigger: {}\n'
    expectIssue(await issue(misindented), 'SLUICE_ERR_CONFIG_YAML', '', { line: 4, col: 1 })
  })

  it('reports tab indentation', async () => {
    const i = await issue('functions:\n\ttelemetry: {}\n')
    expectIssue(i, 'SLUICE_ERR_CONFIG_YAML', '', { line: 2, col: 1 })
    expect(i.message).toMatch(/tab/i)
  })

  it('refuses a billion-laughs alias bomb without expanding it', async () => {
    let bomb = 'lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    // 10^12 strings when fully expanded: only a refusal can finish.
    for (let n = 1; n <= 11; n++) bomb += `lol${n}: &l${n} [${Array.from({ length: 10 }, () => `*l${n - 1}`).join(', ')}]\n`
    const i = await issue(telemetry('', bomb))
    expect(i.code).toBe('SLUICE_ERR_CONFIG_ALIAS_LIMIT')
    expect(i.message).toMatch(/alias/i)
  })

  it('reports a duplicate key at the second occurrence, naming the key and the first one, nested and at the top', async () => {
    const nested = telemetry('    timeoutMs: 1000\n    timeoutMs: 2000\n')
    const n = await issue(nested)
    expectIssue(n, 'SLUICE_ERR_CONFIG_DUPLICATE_KEY', 'functions.telemetry.timeoutMs', at(nested, 'timeoutMs: 2000'))
    const first = at(nested, 'timeoutMs: 1000')
    expect(n.message).toBe(`key "timeoutMs" appears twice in this mapping (first at line ${first.line}:${first.col}); keep one of them`)
    const top = `http: { port: 1 }\n${telemetry()}http: { port: 2 }\n`
    const t = await issue(top)
    expectIssue(t, 'SLUICE_ERR_CONFIG_DUPLICATE_KEY', 'http', at(top, 'http: { port: 2 }'))
    expect(t.message).toMatch(/^key "http" appears twice in this mapping \(first at line 1:1\)/)
    const flow = `http: { port: 1, port: 2 }\n${telemetry()}`
    expectIssue(await issue(flow), 'SLUICE_ERR_CONFIG_DUPLICATE_KEY', 'http.port', at(flow, 'port: 2'))
  })

  it('rejects a document that is not a mapping', async () => {
    for (const text of ['', '42\n', '- a\n- b\n']) {
      const i = await issue(text)
      expect(i.code).toBe('SLUICE_ERR_CONFIG_TYPE')
      expect(i.message).toContain('functions:')
    }
  })
})

describe('schema errors', () => {
  it.each([
    ['"ten"', /expected integer/],
    ['0', /greater or equal to 1/],
    ['20000', /less or equal to 10000/],
    ['1.5', /expected integer/],
  ])('batch.maxSize: %s is a type error at the value', async (value, message) => {
    const yaml = telemetry(`    batch: { maxSize: ${value} }\n`)
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.batch.maxSize', at(yaml, value, 'batch'))
    expect(i.message).toMatch(message)
  })

  it('positions errors in block style too', async () => {
    const yaml = telemetry('    batch:\n      maxWaitMs: 5\n      maxSize: -3\n')
    expectIssue(await issue(yaml), 'SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.batch.maxSize', at(yaml, '-3'))
  })

  it('lists the allowed values of an enum', async () => {
    const yaml = telemetry('    retry: { backoff: linear }\n')
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.retry.backoff', at(yaml, 'linear'))
    expect(i.message).toBe('must be one of: fixed, exponential')
  })

  it('positions an error inside a sequence at the item', async () => {
    const yaml = `functions:
  api:
    code: functions/ok.ts
    trigger:
      http:
        route: a
        methods:
          - GET
          - FETCH
`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'functions.api.trigger.http.methods[1]', at(yaml, 'FETCH'))
    expect(i.message).toContain('GET, POST, PUT')
  })

  it('reports unknown keys at every depth, at the key itself', async () => {
    const yaml = `htpp: { port: 1 }
http: { prot: 1 }
${telemetry(`    timeout: 1000
    batch: { maxSiz: 3 }
    trigger2: {}
`)}`.replace(TIMER, 'trigger: { timer: { schedule: "0 * * * * *", scedule: x } }')
    const list = await issues(yaml)
    const expected: Array<[string, string]> = [
      ['htpp', 'htpp: {'],
      ['http.prot', 'prot:'],
      ['functions.telemetry.trigger.timer.scedule', 'scedule:'],
      ['functions.telemetry.timeout', 'timeout:'],
      ['functions.telemetry.batch.maxSiz', 'maxSiz:'],
      ['functions.telemetry.trigger2', 'trigger2:'],
    ]
    expect(list).toHaveLength(expected.length)
    expected.forEach(([path, needle], n) => {
      const i = list[n] as ConfigIssue
      expectIssue(i, 'SLUICE_ERR_CONFIG_UNKNOWN_KEY', path, at(yaml, needle))
      expect(i.message).toMatch(/^is not a known key \(expected one of: /)
    })
    expect(list[0]?.message).toContain('functions')
    expect(list[3]?.message).toContain('timeoutMs')
    expect(list[4]?.message).toContain('maxSize, maxWaitMs')
  })

  it('reports a misspelled top-level key (and the missing key it was meant to be)', async () => {
    const yaml = `function:\n  telemetry:\n    code: functions/ok.ts\n    ${TIMER}\n`
    const list = await issues(yaml)
    expect(list.map((i) => [i.code, i.path, i.line, i.col])).toEqual([
      ['SLUICE_ERR_CONFIG_REQUIRED', 'functions', 1, 1],
      ['SLUICE_ERR_CONFIG_UNKNOWN_KEY', 'function', 1, 1],
    ])
  })

  it('names the available kinds for an unknown trigger kind', async () => {
    const yaml = `functions:\n  telemetry:\n    code: functions/ok.ts\n    trigger: { sqs: { queue: telemetry } }\n`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_UNKNOWN_TRIGGER', 'functions.telemetry.trigger.sqs', at(yaml, 'sqs'))
    for (const d of CONNECTORS) expect(i.message).toContain(d.kind)
    expect(i.message).toMatch(/known kinds: /)
  })

  it('wants exactly one trigger kind', async () => {
    const none = `functions:\n  telemetry:\n    code: functions/ok.ts\n    trigger: {}\n`
    expectIssue(await issue(none), 'SLUICE_ERR_CONFIG_TRIGGER_COUNT', 'functions.telemetry.trigger', at(none, '{}'))
    const two = `functions:\n  telemetry:\n    code: functions/ok.ts\n    trigger: { timer: { schedule: "0 * * * * *" }, http: { route: a } }\n`
    const i = await issue(two)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TRIGGER_COUNT', 'functions.telemetry.trigger', at(two, '{ timer'))
    expect(i.message).toBe('must name exactly one trigger kind')
  })

  it('reports an unknown connection kind at its value, and a connection without kind', async () => {
    const yaml = `connections:\n  queue: { kind: sqs, url: "https://sqs.example" }\n  other: { url: x }\n${telemetry()}`
    const list = await issues(yaml)
    expect(list).toHaveLength(2)
    expectIssue(list[0] as ConfigIssue, 'SLUICE_ERR_CONFIG_UNKNOWN_CONNECTION_KIND', 'connections.queue.kind', at(yaml, 'sqs'))
    expect(list[0]?.message).toMatch(/"sqs" is not a known kind \(known kinds: /)
    expectIssue(list[1] as ConfigIssue, 'SLUICE_ERR_CONFIG_REQUIRED', 'connections.other.kind', at(yaml, '{ url: x }'))
  })

  it('reports a missing required key once, at its mapping', async () => {
    const noCode = `functions:\n  telemetry:\n    ${TIMER}\n`
    const i = await issue(noCode)
    expectIssue(i, 'SLUICE_ERR_CONFIG_REQUIRED', 'functions.telemetry.code', at(noCode, 'trigger'))
    expect(i.message).toBe('is required')
    const noTrigger = `functions:\n  telemetry:\n    code: functions/ok.ts\n`
    expectIssue(await issue(noTrigger), 'SLUICE_ERR_CONFIG_REQUIRED', 'functions.telemetry.trigger', at(noTrigger, 'code'))
    const noSchedule = `functions:\n  telemetry:\n    code: functions/ok.ts\n    trigger: { timer: { timezone: UTC } }\n`
    expectIssue(await issue(noSchedule), 'SLUICE_ERR_CONFIG_REQUIRED', 'functions.telemetry.trigger.timer.schedule', at(noSchedule, '{ timezone'))
  })

  it('wants at least one function', async () => {
    const i = await issue('http: { port: 1 }\nfunctions: {}\n')
    expectIssue(i, 'SLUICE_ERR_CONFIG_REQUIRED', 'functions', { line: 2, col: 12 })
  })

  it('rejects invalid function, connection and output names at the name', async () => {
    const yaml = `connections:
  "bad conn": { kind: sqs }
functions:
  9lives:
    code: functions/ok.ts
    ${TIMER}
  "two words":
    code: functions/ok.ts
    ${TIMER}
  fine:
    code: functions/ok.ts
    ${TIMER}
    outputs:
      "al/erts": { nope: {} }
`
    const list = await issues(yaml)
    expect(list.map((i) => [i.code, i.path])).toEqual([
      ['SLUICE_ERR_CONFIG_NAME', 'connections.bad conn'],
      ['SLUICE_ERR_CONFIG_NAME', 'functions.9lives'],
      ['SLUICE_ERR_CONFIG_NAME', 'functions.two words'],
      ['SLUICE_ERR_CONFIG_NAME', 'functions.fine.outputs.al/erts'],
    ])
    expect(list.map((i) => [i.line, i.col])).toEqual(
      [at(yaml, '"bad conn"'), at(yaml, '9lives'), at(yaml, '"two words"'), at(yaml, '"al/erts"')].map((p) => [p.line, p.col]),
    )
    for (const i of list) expect(i.message).toMatch(/start with a letter/)
  })

  it('requires store.url with store kind postgres, and accepts schema and pool settings', async () => {
    const yaml = `store: { kind: postgres, schema: Bad-Name }\n${telemetry()}`
    const list = await issues(yaml)
    expect(list.map((i) => [i.code, i.path])).toEqual([
      ['SLUICE_ERR_CONFIG_REQUIRED', 'store'],
      ['SLUICE_ERR_CONFIG_TYPE', 'store.schema'],
    ])
    expect(list[0]?.message).toContain('url: postgres://')
    const good = await parse(`store: { kind: postgres, url: "postgres://db/sluice", schema: gw_1, pool: { max: 3 } }\n${telemetry()}`)
    expect(good.config.store).toMatchObject({ kind: 'postgres', url: 'postgres://db/sluice', schema: 'gw_1', pool: { max: 3 } })
  })

  it('rejects a section of the wrong type', async () => {
    const yaml = `store: ~\nhttp: 5\n${telemetry()}`
    const list = await issues(yaml)
    expect(list.map((i) => [i.code, i.path, i.line, i.col])).toEqual([
      ['SLUICE_ERR_CONFIG_TYPE', 'store', 1, 8],
      ['SLUICE_ERR_CONFIG_TYPE', 'http', 2, 7],
    ])
  })
})

describe('semantic checks', () => {
  it.each([
    ['5 fields', '"* * * * *"', /has 5 fields; use 6/],
    ['garbage', '"every day at noon"', /is not a valid cron expression|fields/],
    ['6 fields of garbage', '"a b c d e f"', /is not a valid cron expression/],
    ['out of range', '"99 * * * * *"', /is not a valid cron expression/],
  ])('rejects a bad cron schedule (%s)', async (_name, schedule, message) => {
    const yaml = `functions:\n  nightly:\n    code: functions/ok.ts\n    trigger: { timer: { schedule: ${schedule} } }\n`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_CRON', 'functions.nightly.trigger.timer.schedule', at(yaml, schedule))
    expect(i.message).toMatch(message)
  })

  it('rejects an unknown timezone', async () => {
    const yaml = `functions:\n  nightly:\n    code: functions/ok.ts\n    trigger: { timer: { schedule: "0 0 3 * * *", timezone: Mars/Olympus_Mons } }\n`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TIMEZONE', 'functions.nightly.trigger.timer.timezone', at(yaml, 'Mars'))
    expect(i.message).toContain('"Mars/Olympus_Mons"')
  })

  it('says how to write a route instead of showing its regular expression', async () => {
    const route = (r: string) => `functions:\n  orders:\n    code: functions/ok.ts\n    trigger: { http: { route: "${r}" } }\n`
    const cases: Array<[string, string]> = [
      ['/api/orders/{id}', 'routes are written without the /api/ prefix (the gateway adds it): write route: orders/{id} (served at /api/orders/{id})'],
      ['/api/orders', 'routes are written without the /api/ prefix (the gateway adds it): write route: orders (served at /api/orders)'],
      ['/orders/{id}/', 'routes are written without a leading or trailing /: write route: orders/{id} (served at /api/orders/{id})'],
      [
        'orders?id',
        'must be a path below /api/ of letters, digits, . _ ~ - and {name} parameters, with an optional last {*name} wildcard, e.g. stations/{id} or files/{*path}',
      ],
      [
        '/api/',
        'must be a path below /api/ of letters, digits, . _ ~ - and {name} parameters, with an optional last {*name} wildcard, e.g. stations/{id} or files/{*path}; /api/ itself cannot be a route',
      ],
    ]
    for (const [r, message] of cases) {
      const yaml = route(r)
      const i = await issue(yaml)
      expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'functions.orders.trigger.http.route', at(yaml, `"${r}"`))
      expect(i.message).toBe(message)
    }
    const key = await issue(telemetry('    orderKey: station\n'))
    expect(key.message).toBe('must be source, none, or a path into the event such as body.station or meta.topic')
  })

  it('rejects two HTTP functions on the same route and method, whatever the parameter names', async () => {
    const yaml = `functions:
  a:
    code: functions/ok.ts
    trigger: { http: { route: "stations/{id}", methods: [GET, POST] } }
  b:
    code: functions/ok.ts
    trigger: { http: { route: "stations/{name}", methods: [PUT, POST] } }
`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_ROUTE', 'functions.b.trigger.http.route', at(yaml, '"stations/{name}"'))
    expect(i.message).toBe('POST /api/stations/{name} is also the route of function a')
  })

  it('allows the same route with other methods, other case or a wildcard', async () => {
    const yaml = `functions:
  a:
    code: functions/ok.ts
    trigger: { http: { route: "stations/{id}", methods: [GET] } }
  b:
    code: functions/ok.ts
    trigger: { http: { route: "stations/{id}", methods: [POST] } }
  c:
    code: functions/ok.ts
    trigger: { http: { route: "Stations/{id}", methods: [GET] } }
  d:
    code: functions/ok.ts
    trigger: { http: { route: "files/{*path}", methods: [GET] } }
  e:
    code: functions/ok.ts
    trigger: { http: { route: "files/{name}", methods: [GET] } }
`
    const { config } = await parse(yaml)
    expect(Object.keys(config.functions)).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('wants scale.min <= scale.max', async () => {
    const yaml = telemetry('    scale: { min: 5, max: 2 }\n')
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.scale.min', at(yaml, '5'))
    expect(i.message).toBe('must be <= scale.max (2)')
  })

  it('wants retry.initialDelayMs <= maxDelayMs and cpuTimeMs <= timeoutMs', async () => {
    const yaml = telemetry('    retry: { initialDelayMs: 5000, maxDelayMs: 1000 }\n    timeoutMs: 100\n    cpuTimeMs: 200\n')
    const list = await issues(yaml)
    expect(list.map((i) => [i.code, i.path])).toEqual([
      ['SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.retry.initialDelayMs'],
      ['SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.cpuTimeMs'],
    ])
  })
})

describe('function code', () => {
  const withCode = (code: string) => `functions:\n  telemetry:\n    code: ${code}\n    ${TIMER}\n`

  it('reports a missing file at the code: value', async () => {
    const yaml = withCode('functions/missing.ts')
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_FUNCTION_NOT_FOUND', 'functions.telemetry.code', at(yaml, 'functions/missing.ts'))
    // Shown relative to the project root, which the message names.
    expect(i.message).toBe(`function code file not found: functions/missing.ts (relative paths start at the project root ${projectRoot()})`)
  })

  it('reports a directory as not found', async () => {
    const yaml = withCode('functions')
    expect((await issue(yaml)).code).toBe('SLUICE_ERR_FUNCTION_NOT_FOUND')
  })

  it('reports a syntax error with the function file position', async () => {
    const yaml = withCode('functions/syntax.ts')
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_FUNCTION_COMPILE', 'functions.telemetry.code', at(yaml, 'functions/syntax.ts'))
    expect(i.message).toContain('function telemetry does not compile')
    expect(i.message).toMatch(/functions\/syntax\.ts:3:1 /)
  })

  it.each([
    ['functions/uses-node-fs.ts', 'node:fs'],
    ['functions/uses-fs.ts', 'fs'],
  ])('rejects %s: Node built-ins are not available', async (file, mod) => {
    const i = await issue(withCode(file))
    expect(i.code).toBe('SLUICE_ERR_FUNCTION_NODE_BUILTIN')
    expect(i.message).toContain(`${file}:1:`)
    expect(i.message).toContain(`"${mod}"`)
  })

  it('rejects a module without a default export', async () => {
    const i = await issue(withCode('functions/no-default.ts'))
    expect(i.code).toBe('SLUICE_ERR_FUNCTION_EXPORT')
    expect(i.message).toContain('found: handler')
  })

  it('skips compiling with compile: false', async () => {
    const { compiled } = await parse(withCode('functions/syntax.ts'), {}, { compile: false })
    expect(compiled.size).toBe(0)
  })
})

describe('all errors at once', () => {
  it('reports five different problems as five issues, sorted by line', async () => {
    // Schema, semantic, file and compile problems in one file: one pass finds them all.
    const yaml = `functions:
  broken-code:
    code: functions/syntax.ts
    ${TIMER}
  bad-batch:
    code: functions/ok.ts
    ${TIMER}
    batch: { maxSize: 0 }
  bad-cron:
    code: functions/missing.ts
    trigger: { timer: { schedule: "* * * * *" } }
store: { kind: postgres }
`
    const list = await issues(yaml)
    expect(list.map((i) => [i.line, i.code, i.path])).toEqual([
      [3, 'SLUICE_ERR_FUNCTION_COMPILE', 'functions.broken-code.code'],
      [8, 'SLUICE_ERR_CONFIG_TYPE', 'functions.bad-batch.batch.maxSize'],
      [10, 'SLUICE_ERR_FUNCTION_NOT_FOUND', 'functions.bad-cron.code'],
      [11, 'SLUICE_ERR_CONFIG_CRON', 'functions.bad-cron.trigger.timer.schedule'],
      [12, 'SLUICE_ERR_CONFIG_REQUIRED', 'store'],
    ])
  })

  it('sorts by column within a line', async () => {
    const yaml = telemetry('    batch: { maxSize: 0, maxWaitMs: -1 }\n')
    const list = await issues(yaml)
    expect(list.map((i) => i.path)).toEqual(['functions.telemetry.batch.maxSize', 'functions.telemetry.batch.maxWaitMs'])
    expect(list[0]?.line).toBe(list[1]?.line)
    expect(list[0]!.col).toBeLessThan(list[1]!.col)
  })
})
