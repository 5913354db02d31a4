/**
 * Types for function authors. Two layers: expectTypeOf assertions below (checked by
 * `npm run typecheck`), and tsc runs over fixtures (in `npm test`): every wrong usage in
 * fixtures/wrong-usage.ts sits under `@ts-expect-error`, so the run fails if one compiles.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest'
import type * as Root from '../../src/index.js'
import type { BatchResult, Context, Handler, HttpEvent, KafkaEvent, Log, MqttEvent, TimerEvent } from '../../src/sdk/function.js'

const TSC = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc')
const FIXTURES = resolve('test/sdk/fixtures')
const FUNCTION_TYPES = resolve('src/sdk/function.ts')

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

/** tsc over `files` with the settings of a function project (no Node types). */
function typecheck(files: string[]): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-types-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  const tsconfig = {
    compilerOptions: {
      target: 'ES2023',
      lib: ['ES2023'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noUncheckedIndexedAccess: true,
      noEmit: true,
      types: [],
      paths: { 'sluice/function': [FUNCTION_TYPES] },
    },
    files,
  }
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
  const r = spawnSync(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, output: r.stdout + r.stderr }
}

interface Telemetry {
  station: string
  battery: number
}

describe('function types', () => {
  it('type the events per trigger, the context and the results (expectTypeOf, checked by tsc)', () => {
    expectTypeOf<MqttEvent<Telemetry>['body']>().toEqualTypeOf<Telemetry>()
    expectTypeOf<MqttEvent['meta']['qos']>().toEqualTypeOf<0 | 1 | 2>()
    expectTypeOf<KafkaEvent['meta']['offset']>().toEqualTypeOf<number>()
    expectTypeOf<KafkaEvent['meta']['key']>().toEqualTypeOf<string | null>()
    expectTypeOf<HttpEvent<unknown, 'id'>['meta']['params']>().toEqualTypeOf<{ id: string }>()
    expectTypeOf<TimerEvent['body']['isPastDue']>().toEqualTypeOf<boolean>()
    expectTypeOf<Context['log']>().toBeCallableWith('text', 1)
    expectTypeOf<Log['warn']>().toBeCallableWith({ any: 'value' })
    expectTypeOf<Context<'alerts'>['output']>().parameter(0).toEqualTypeOf<'alerts'>()
    expectTypeOf<BatchResult['failed']>().toEqualTypeOf<Array<string | { id: string; reason?: string }> | undefined>()
    expectTypeOf<Handler<MqttEvent<Telemetry>, BatchResult>>().parameter(0).toEqualTypeOf<Array<MqttEvent<Telemetry>>>()
    expectTypeOf<Handler<MqttEvent, BatchResult>>().returns.toEqualTypeOf<BatchResult | Promise<BatchResult>>()
    // The root entry exports the same types.
    expectTypeOf<Root.Handler<Root.AmqpEvent>>().toEqualTypeOf<Handler<Root.AmqpEvent>>()
    expectTypeOf<Root.EventHubsEvent['meta']['sequenceNumber']>().toEqualTypeOf<number>()
    expectTypeOf<Root.HttpResponse['status']>().toEqualTypeOf<number | undefined>()
  })

  it('compile correct functions of every trigger kind with no Node types', () => {
    const r = typecheck([join(FIXTURES, 'correct-usage.ts')])
    expect(r.output).toBe('')
    expect(r.status).toBe(0)
  })

  it('reject wrong usage: each line under @ts-expect-error must fail to compile', () => {
    const r = typecheck([join(FIXTURES, 'wrong-usage.ts')])
    expect(r.output).toBe('')
    expect(r.status).toBe(0)
  })

  it('the wrong-usage check can fail: a correct line under @ts-expect-error is reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-types-src-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, 'fixture.ts')
    writeFileSync(
      file,
      `import type { Handler, MqttEvent } from 'sluice/function'
export const h: Handler<MqttEvent<{ n: number }>> = (events, ctx) => {
  // @ts-expect-error correct usage: this directive is unused and tsc says so
  ctx.output('alerts', events[0]?.body.n)
}
`,
    )
    const r = typecheck([file])
    expect(r.status).not.toBe(0)
    expect(r.output).toMatch(/fixture\.ts\(3,3\): error TS2578/)
  })

  it('type-check every function template of sluice init and sluice new', () => {
    const dir = resolve('templates/functions')
    const files = readdirSync(dir).map((f) => join(dir, f))
    expect(files).toHaveLength(6)
    const r = typecheck(files)
    expect(r.output).toBe('')
    expect(r.status).toBe(0)
  })

  it('type-check the demo functions with functions/tsconfig.json', () => {
    const r = spawnSync(process.execPath, [TSC, '-p', 'functions/tsconfig.json', '--pretty', 'false'], { encoding: 'utf8', timeout: 60_000 })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})
