/**
 * ${VAR} substitution in the configuration, and connection references, through parseConfig.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { OneOf, Strict, Type, type ConnectorDefinition } from '../../src/sdk/index.js'
import { at, expectIssue, issue, issues, parse, projectRoot, telemetry, TIMER, useProject } from './parse-helpers.js'

useProject()

describe('${VAR} substitution', () => {
  it('reads variables from env, with defaults and $${ literals', async () => {
    const yaml = `admin:
  key: \${ADMIN_KEY}
store:
  path: \${STATE_DIR:-/var/lib/sluice}/state.db
log:
  level: \${LOG_LEVEL:-warn}
${telemetry()}`
    const { config } = await parse(yaml, { ADMIN_KEY: 'k'.repeat(20) })
    expect(config.admin.key).toBe('k'.repeat(20))
    expect(config.store.path).toBe('/var/lib/sluice/state.db')
    expect(config.log.level).toBe('warn')
  })

  it('keeps $${ as a literal ${', async () => {
    const yaml = `admin: { key: "prefix-$\${NOT_A_VAR}-suffix" }\nstore:\n  path: $\${HOME}/state.db\n${telemetry()}`
    const { config } = await parse(yaml, { NOT_A_VAR: 'no', HOME: 'no' })
    expect(config.admin.key).toBe('prefix-${NOT_A_VAR}-suffix')
    expect(config.store.path).toBe('${HOME}/state.db')
  })

  it('converts an unquoted value to a number where the schema wants one: port: ${PORT}', async () => {
    const block = await parse(`http:\n  port: \${PORT}\n${telemetry()}`, { PORT: '8080' })
    expect(block.config.http.port).toBe(8080)
    // The documented flow form, where `{` would otherwise open a mapping.
    const flow = await parse(`http: { port: \${PORT}, host: \${HOST:-127.0.0.1} }\nadmin: { key: \${KEY} }\n${telemetry()}`, {
      PORT: '9090',
      KEY: 'a-long-admin-key-123',
    })
    expect(flow.config.http).toMatchObject({ port: 9090, host: '127.0.0.1' })
    expect(flow.config.admin.key).toBe('a-long-admin-key-123')
  })

  it('keeps a quoted reference a string, and never turns a value into a mapping', async () => {
    const quoted = `http: { port: "\${PORT}" }\n${telemetry()}`
    const i = await issue(quoted, { PORT: '8080' })
    expectIssue(i, 'SLUICE_ERR_CONFIG_TYPE', 'http.port', at(quoted, '"${PORT}"'))
    const { config } = await parse(`store:\n  path: \${P}\n${telemetry()}`, { P: '{ a: 1 }' })
    expect(config.store.path).toBe('{ a: 1 }')
  })

  it('substitutes inside sequences', async () => {
    const yaml = `functions:\n  api:\n    code: functions/ok.ts\n    trigger: { http: { route: a, methods: [GET, \${METHOD}] } }\n`
    const { config } = await parse(yaml, { METHOD: 'PUT' })
    expect(config.functions.api?.trigger.options.methods).toEqual(['GET', 'PUT'])
    const i = (await issues(yaml)).find((x) => x.code === 'SLUICE_ERR_CONFIG_ENV')
    expect(i).toMatchObject({ path: 'functions.api.trigger.http.methods[1]', ...at(yaml, '${METHOD}') })
  })

  it('drops an optional key whose whole value is an unset variable, with a note', async () => {
    const yaml = `http:\n  port: \${UNSET_PORT}\nadmin: { key: \${UNSET_KEY} }\n${telemetry()}`
    const { config, notes } = await parse(yaml)
    expect(config.http.port).toBe(7071)
    expect(config.admin).toEqual({})
    expect(notes).toEqual(['http.port: ${UNSET_PORT} is not set; the key is left out', 'admin.key: ${UNSET_KEY} is not set; the key is left out'])
  })

  it('keeps a substituted value as the string it is: no YAML comments, anchors or tags', async () => {
    const yaml = `admin: { key: \${KEY} }\nstore:\n  path: \${P}\nlog: { level: \${LEVEL} }\n${telemetry()}`
    const { config } = await parse(yaml, { KEY: 's3cr3t-key #tail', P: '&anchor state.db', LEVEL: 'warn' })
    expect(config.admin.key).toBe('s3cr3t-key #tail')
    expect(config.store.path).toBe('&anchor state.db')
    expect(config.log.level).toBe('warn')
    // A string schema keeps digits as a string: no number sneaks into a string key.
    const digits = await parse(`admin: { key: \${KEY} }\n${telemetry()}`, { KEY: '1234567890123456' })
    expect(digits.config.admin.key).toBe('1234567890123456')
    const other = await parse(`store: { path: \${P} }\n${telemetry()}`, { P: '!!int 12' })
    expect(other.config.store.path).toBe('!!int 12')
  })

  it('converts to a boolean or an integer only where the schema asks, and says so when it cannot', async () => {
    const yaml = `functions:\n  telemetry:\n    code: functions/ok.ts\n    trigger: { timer: { schedule: "0 * * * * *", runOnStartup: \${RUN} } }\n    batch: { maxSize: \${SIZE} }\n`
    const { config } = await parse(yaml, { RUN: 'true', SIZE: ' 25 ' })
    expect(config.functions.telemetry?.trigger.options.runOnStartup).toBe(true)
    expect(config.functions.telemetry?.batch.maxSize).toBe(25)
    const list = await issues(yaml, { RUN: 'yes', SIZE: '25 events' })
    expect(list.map((i) => [i.code, i.path, i.line, i.col, i.message])).toEqual([
      [
        'SLUICE_ERR_CONFIG_TYPE',
        'functions.telemetry.trigger.timer.runOnStartup',
        at(yaml, '${RUN}').line,
        at(yaml, '${RUN}').col,
        'must be true or false, but ${RUN} gives "yes"',
      ],
      [
        'SLUICE_ERR_CONFIG_TYPE',
        'functions.telemetry.batch.maxSize',
        at(yaml, '${SIZE}').line,
        at(yaml, '${SIZE}').col,
        'must be a number, but ${SIZE} gives "25 events"',
      ],
    ])
    // Converted, the value still meets the schema's other rules.
    const range = await issue(yaml, { RUN: 'false', SIZE: '0' })
    expectIssue(range, 'SLUICE_ERR_CONFIG_TYPE', 'functions.telemetry.batch.maxSize', at(yaml, '${SIZE}'))
    expect(range.message).toMatch(/greater or equal to 1/)
  })

  it('converts where a union accepts a number or boolean, and keeps a string the union accepts', async () => {
    const yaml = `connections:
  q: { kind: amqp, url: \${AMQP_URL} }
functions:
  telemetry:
    code: functions/ok.ts
    trigger:
      amqp:
        connection: q
        queue: \${QUEUE}
        declare: { durable: \${DURABLE}, arguments: { x-max-length: \${MAX}, x-queue-mode: \${MODE}, x-note: "\${MAX}" } }
`
    const { config } = await parse(yaml, { AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672', QUEUE: '12345', DURABLE: 'FALSE', MAX: '1000', MODE: 'lazy' })
    const options = config.functions.telemetry?.trigger.options as { queue: unknown; declare: { durable: unknown; arguments: Record<string, unknown> } }
    // A string-only key keeps digits as text; a union of string, number and boolean takes the number.
    expect(options.queue).toBe('12345')
    expect(options.declare.durable).toBe(false)
    expect(options.declare.arguments).toEqual({ 'x-max-length': 1000, 'x-queue-mode': 'lazy', 'x-note': '1000' })
  })

  it('reports an unset whole value on a required key as SLUICE_ERR_CONFIG_ENV, where the variable is written', async () => {
    const yaml = `functions:\n  telemetry:\n    code: \${FUNCTION_FILE}\n    ${TIMER}\n`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_ENV', 'functions.telemetry.code', at(yaml, '${FUNCTION_FILE}'))
    expect(i.message).toBe('is required but ${FUNCTION_FILE} is not set (set it, or write ${FUNCTION_FILE:-default})')
    // Not the first key of its mapping, and in flow style: still at the variable, not the mapping.
    const later = `functions:\n  telemetry:\n    ${TIMER}\n    timeoutMs: 100\n    code: \${FUNCTION_FILE}\n`
    expectIssue(await issue(later), 'SLUICE_ERR_CONFIG_ENV', 'functions.telemetry.code', at(later, '${FUNCTION_FILE}'))
    const flow = `functions:\n  telemetry: { ${TIMER}, code: \${FUNCTION_FILE} }\n`
    expectIssue(await issue(flow), 'SLUICE_ERR_CONFIG_ENV', 'functions.telemetry.code', at(flow, '${FUNCTION_FILE}'))
    // Set, it works.
    const { config } = await parse(yaml, { FUNCTION_FILE: 'functions/ok.ts' })
    expect(config.functions.telemetry?.codePath).toBe(join(projectRoot(), 'functions/ok.ts'))
  })

  it('reports an unset variable inside a longer string as SLUICE_ERR_CONFIG_ENV', async () => {
    const yaml = `store:\n  path: \${STATE_DIR}/state.db\n${telemetry()}`
    const i = await issue(yaml)
    expectIssue(i, 'SLUICE_ERR_CONFIG_ENV', 'store.path', at(yaml, '${STATE_DIR}'))
    expect(i.message).toContain('${STATE_DIR} is not set')
  })

  it('reads only the env it is given', async () => {
    process.env.SLUICE_TEST_ONLY_IN_PROCESS_ENV = '1234'
    try {
      const { config } = await parse(`http:\n  port: \${SLUICE_TEST_ONLY_IN_PROCESS_ENV}\n${telemetry()}`, {})
      expect(config.http.port).toBe(7071)
    } finally {
      delete process.env.SLUICE_TEST_ONLY_IN_PROCESS_ENV
    }
  })
})

describe('connections (with a connector that needs one)', () => {
  // A connector definition as a broker connector declares it: a connection schema and a trigger
  // that names its connection. Only its schemas are used; nothing is started.
  const queueConnector: ConnectorDefinition = {
    kind: 'queue',
    connectionSchema: Type.Object({ url: Type.String({ minLength: 1 }), prefetch: Type.Integer({ minimum: 1, default: 10 }) }, Strict),
    triggerSchema: Type.Object({ connection: Type.String(), queue: Type.String(), mode: OneOf(['ack', 'auto'], { default: 'ack' }) }, Strict),
    outputSchema: Type.Object({ connection: Type.String(), queue: Type.String(), persistent: Type.Boolean({ default: true }) }, Strict),
    createTrigger: () => {
      throw new Error('not started in this test')
    },
  }
  const defs = [...CONNECTORS, queueConnector]
  const withQueue = (connections: string, connection: string) => `connections:
${connections}
functions:
  telemetry:
    code: functions/ok.ts
    trigger: { queue: { connection: ${connection}, queue: telemetry } }
`

  it('validates a connection and fills its defaults', async () => {
    const { config } = await parse(withQueue('  q: { kind: queue, url: "amqp://x" }', 'q'), {}, { connectors: defs })
    expect(config.connections.q).toEqual({ name: 'q', kind: 'queue', required: false, options: { url: 'amqp://x', prefetch: 10 } })
    expect(config.functions.telemetry?.trigger).toEqual({ kind: 'queue', connection: 'q', options: { connection: 'q', queue: 'telemetry', mode: 'ack' } })
  })

  it('fills the defaults of outputs', async () => {
    const yaml = `${withQueue('  q: { kind: queue, url: "amqp://x" }', 'q')}    outputs:\n      alerts: { queue: { connection: q, queue: alerts } }\n`
    const { config } = await parse(yaml, {}, { connectors: defs })
    expect(config.functions.telemetry?.outputs.alerts).toEqual({
      kind: 'queue',
      connection: 'q',
      options: { connection: 'q', queue: 'alerts', persistent: true },
    })
  })

  it('reports an undeclared connection', async () => {
    const yaml = withQueue('  q: { kind: queue, url: "amqp://x" }', 'nope')
    const list = await issues(yaml, {}, { connectors: defs })
    expect(list.map((i) => [i.code, i.path, i.line, i.col])).toEqual([
      ['SLUICE_ERR_CONFIG_CONNECTION', 'functions.telemetry.trigger.queue.connection', at(yaml, 'nope').line, at(yaml, 'nope').col],
    ])
  })

  it('reports an invalid connection once, not again where it is used', async () => {
    const yaml = withQueue('  q: { kind: queue, url: "amqp://x", prefetch: 0, extra: 1 }', 'q')
    const list = await issues(yaml, {}, { connectors: defs })
    expect(list.map((i) => [i.code, i.path])).toEqual([
      ['SLUICE_ERR_CONFIG_TYPE', 'connections.q.prefetch'],
      ['SLUICE_ERR_CONFIG_UNKNOWN_KEY', 'connections.q.extra'],
    ])
  })
})
