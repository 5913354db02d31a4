/**
 * planReload: what a reload does to each function, computed from two configurations loaded the
 * way the gateway loads them (parseConfig with the real connectors and compiled code).
 */
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig, type LoadedConfig } from '../../src/config/load.js'
import { planReload } from '../../src/gateway/reload-plan.js'
import { projectDir } from '../helpers/gateway.js'

const BASE = `http: { port: 7071 }
store: { path: state.db }
connections:
  broker: { kind: mqtt, url: mqtt://127.0.0.1:1883 }
  other: { kind: mqtt, url: mqtt://127.0.0.1:1884 }
functions:
  same:
    code: functions/a.ts
    trigger: { mqtt: { connection: broker, topic: same } }
  code:
    code: functions/a.ts
    trigger: { mqtt: { connection: broker, topic: code } }
  batch:
    code: functions/a.ts
    trigger: { mqtt: { connection: broker, topic: batch } }
    batch: { maxSize: 10 }
  topic:
    code: functions/a.ts
    trigger: { mqtt: { connection: broker, topic: topic } }
  conn:
    code: functions/a.ts
    trigger: { mqtt: { connection: other, topic: conn } }
  outputs:
    code: functions/a.ts
    trigger: { http: { route: outputs, methods: [POST], auth: anonymous } }
  gone:
    code: functions/a.ts
    trigger: { timer: { schedule: "0 0 3 * * *" } }
`

async function load(dir: string, yaml: string): Promise<LoadedConfig> {
  return parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
}

describe('planReload', () => {
  it('sorts each change into added, removed, code, settings, trigger, unit and restart-only', async () => {
    const p = projectDir({ 'functions/a.ts': 'export default async () => 1\n', 'functions/b.ts': 'export default async () => 2\n' })
    onTestFinished(() => p.cleanup())
    const cur = await load(p.dir, BASE)
    const next = await load(
      p.dir,
      BASE.replace('port: 7071', 'port: 7072')
        .replace('url: mqtt://127.0.0.1:1884', 'url: mqtt://127.0.0.1:1885')
        .replace(
          'code: functions/a.ts\n    trigger: { mqtt: { connection: broker, topic: code } }',
          'code: functions/b.ts\n    trigger: { mqtt: { connection: broker, topic: code } }',
        )
        .replace('batch: { maxSize: 10 }', 'batch: { maxSize: 20 }')
        .replace('topic: topic }', 'topic: topic2 }')
        .replace('auth: anonymous } }\n  gone:', 'auth: anonymous } }\n    outputs:\n      out: { mqtt: { connection: broker, topic: results } }\n  gone:')
        .replace(/ {2}gone:\n.*\n.*\n/, '  fresh:\n    code: functions/b.ts\n    trigger: { timer: { schedule: "0 0 4 * * *" } }\n'),
    )
    const hashes = new Map([...cur.compiled].map(([n, c]) => [n, c.hash]))
    const plan = planReload(cur.config, hashes, next.config, next.compiled)
    expect(plan.added).toEqual(['fresh'])
    expect(plan.removed).toEqual(['gone'])
    expect(plan.restartRequired).toEqual(['http.port'])
    const by = Object.fromEntries(plan.updated.map(({ name, ...c }) => [name, c]))
    expect(by).toEqual({
      code: { code: true, settings: false, trigger: false, unit: false },
      batch: { code: false, settings: true, trigger: false, unit: false },
      topic: { code: false, settings: false, trigger: true, unit: false },
      conn: { code: false, settings: false, trigger: true, unit: false },
      outputs: { code: false, settings: false, trigger: true, unit: true },
    })
    // The running port stays in the configuration in effect; the rest is the new one.
    expect(plan.config.http.port).toBe(7071)
    expect(plan.config.connections.other?.options.url).toBe('mqtt://127.0.0.1:1885')
    expect(Object.keys(plan.config.functions)).toContain('fresh')
  })
})
