/**
 * What a function author sees when code goes wrong: stack traces point at their own files and
 * lines (source maps, in the error a call returns and in the dead letter of a stream event), and
 * an import of a Node.js built-in fails at compile time with a coded error that says where and
 * what to use instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SluiceError } from '../../src/errors.js'
import { compileFunction } from '../../src/sandbox/compile.js'
import { detachSourceMap } from '../../src/sandbox/source-map.js'
import type { InvocationResult } from '../../src/sdk/index.js'
import type { DeadLetter } from '../../src/store/store.js'
import { dropSession, publish, SYSTEM_BROKER, uid } from '../connectors/mqtt/helpers.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

// Line numbers matter below: the throw is on line 4 of lib/check.ts, the call on line 6 of
// functions/order-status.ts.
const CHECK = `export function check(order: { id: string; status?: string }): void {
  const allowed: string[] = ['open', 'shipped']
  if (!allowed.includes(order.status ?? '')) {
    throw new Error(\`order \${order.id} has unknown status \${order.status}\`)
  }
}
`
const ORDER_STATUS = `import { check } from '../lib/check.js'

interface Order { id: string; status?: string }

export default async function (events: Array<{ body: Order }>) {
  for (const e of events) check(e.body)
  return { body: 'ok' }
}
`

describe('stack traces of function errors', () => {
  let t: TestGateway
  const c = uid('c')
  const topic = `${uid('t')}/orders`

  beforeAll(async () => {
    t = await startGateway({
      yaml: `connections:
  ${c}: { kind: mqtt, url: "${SYSTEM_BROKER}" }
functions:
  sm-call:
    code: functions/order-status.ts
    trigger: { http: { route: order-status, auth: anonymous } }
  sm-stream:
    code: functions/order-status.ts
    trigger: { mqtt: { connection: ${c}, topic: "${topic}", qos: 1 } }
    retry: { maxAttempts: 1 }
`,
      files: { 'package.json': '{ "name": "orders", "private": true }', 'lib/check.ts': CHECK, 'functions/order-status.ts': ORDER_STATUS },
    })
  })
  afterAll(async () => {
    await t.stop()
    await dropSession(SYSTEM_BROKER, `sluice-${c}-sm-stream`)
  })

  const expectMapped = (error: { code: string; message: string; context?: Record<string, unknown> } | undefined) => {
    expect(error?.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(error?.message).toMatch(/^Error: order o-1 has unknown status lost \(at lib\/check\.ts:4:\d+\)$/)
    expect(error?.context?.location).toMatch(/^lib\/check\.ts:4:\d+$/)
    const stack = String(error?.context?.stack)
    const frames = stack.split('\n').filter((l) => /^\s+at /.test(l))
    expect(frames[0]).toMatch(/\(lib\/check\.ts:4:\d+\)$/)
    expect(frames[1]).toMatch(/\(functions\/order-status\.ts:6:\d+\)$/)
    expect(stack).not.toMatch(/function:sm-|sluice:bootstrap/)
  }

  it('maps the stack of the error a call returns to the author files and lines, relative to the project root', async () => {
    const res = await fetch(`${t.url}/admin/functions/sm-call/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ body: { id: 'o-1', status: 'lost' } }] }),
    })
    const r = (await res.json()) as InvocationResult
    expect(r.ok).toBe(false)
    expectMapped(r.error)
  })

  it('maps the stack in the dead letter of a stream event', async () => {
    await publish(SYSTEM_BROKER, topic, [{ id: 'o-1', status: 'lost' }])
    const letter = await waitFor(
      async () => {
        const res = await fetch(`${t.url}/admin/dead-letters?function=sm-stream`)
        return ((await res.json()) as { items: DeadLetter[] }).items[0]
      },
      20_000,
      'the dead letter',
    )
    expectMapped(letter.error)
  })
})

describe('Node.js built-ins in function code', () => {
  const project = projectDir({
    'package.json': '{ "name": "builtins", "private": true }',
    'functions/reader.ts': `// reads a file
import { readFileSync } from 'node:fs'
export default async () => readFileSync('/etc/passwd', 'utf8')
`,
    'functions/paths.js': `import { join } from 'path'
import { createHash } from 'crypto'
export default async () => join('a', 'b')
`,
    // An npm package named like a built-in (a browser polyfill) is installed: it is bundled.
    'functions/emitter.ts': `import { EventEmitter } from 'events'
export default async () => typeof EventEmitter
`,
    'node_modules/events/package.json': '{ "name": "events", "version": "3.3.0", "main": "events.js" }',
    'node_modules/events/events.js': 'export class EventEmitter {}\n',
  })
  afterAll(() => project.cleanup())
  const compile = (file: string, functionName: string) => compileFunction(`${project.dir}/${file}`, { root: project.dir, functionName })
  const failure = async (file: string, fn: string): Promise<SluiceError> => {
    try {
      await compile(file, fn)
    } catch (e) {
      return e as SluiceError
    }
    throw new Error(`${file} compiled`)
  }

  it('refuses node:fs with a stable code, the import position, and what to use instead', async () => {
    const e = await failure('functions/reader.ts', 'reader')
    expect(e.code).toBe('SLUICE_ERR_FUNCTION_NODE_BUILTIN')
    expect(e.message).toContain('function reader imports "node:fs"')
    expect(e.message).toMatch(/^functions\/reader\.ts:2:\d+ imports the Node\.js built-in "node:fs"$/m)
    expect(e.message).toMatch(/not available/)
    expect(e.message).toMatch(/events the function receives/)
    expect(e.message).toMatch(/ctx\.output/)
    expect(e.message).not.toMatch(/Could not resolve/)
  })

  it('names every bare built-in import (path, crypto) with its line', async () => {
    const e = await failure('functions/paths.js', 'paths')
    expect(e.code).toBe('SLUICE_ERR_FUNCTION_NODE_BUILTIN')
    expect(e.message).toMatch(/^functions\/paths\.js:1:\d+ imports the Node\.js built-in "path"$/m)
    expect(e.message).toMatch(/^functions\/paths\.js:2:\d+ imports the Node\.js built-in "crypto"$/m)
  })

  it('bundles an installed npm package that has a built-in name, with a source map kept off the isolate code', async () => {
    const compiled = await compile('functions/emitter.ts', 'emitter')
    const { code, map } = detachSourceMap(compiled.code)
    expect(code).toContain('var EventEmitter = class')
    expect(code).not.toContain('sourceMappingURL')
    expect(JSON.parse(map ?? '{}')).toMatchObject({ version: 3, sources: expect.arrayContaining(['functions/emitter.ts', 'node_modules/events/events.js']) })
  })
})
