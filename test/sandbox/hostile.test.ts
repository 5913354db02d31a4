import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * Hostile function code: every probe ends with a coded error (or a proof that nothing leaked),
 * and the gateway keeps serving a well-behaved function throughout.
 */
const fn = (name: string, extra = '') => `
  ${name}:
    code: functions/${name}.js
    trigger: { http: { route: ${name}, auth: anonymous } }
    memoryMb: 32
    ${extra || 'timeoutMs: 1000'}`

const FILES: Record<string, string> = {
  'functions/healthy.js': `export default async (events) => ({ body: { ok: true, n: events.length } })`,
  'functions/probes.js': `
    export default async function () {
      const g = globalThis
      const out = {}
      out.process = typeof g.process
      out.require = typeof g.require
      out.module = typeof g.module
      out.Buffer = typeof g.Buffer
      out.fetch = typeof g.fetch
      out.setTimeout = typeof g.setTimeout
      out.SharedArrayBuffer = typeof g.SharedArrayBuffer
      out.Atomics = typeof g.Atomics
      out.WebAssembly = typeof g.WebAssembly
      out.ivm = Object.getOwnPropertyNames(g).filter((k) => /ivm|isolated|sluice|__/i.test(k))
      try { await import('fs'); out.import = 'loaded' } catch (e) { out.import = 'refused' }
      try { out.fnProcess = typeof (new Function('return this')()).process } catch (e) { out.fnProcess = 'threw' }
      try { out.ctorProcess = ({}).constructor.constructor('return typeof process')() } catch (e) { out.ctorProcess = 'threw' }
      try { out.evalRequire = eval('typeof require') } catch (e) { out.evalRequire = 'threw' }
      const seen = []
      for (const k of Object.getOwnPropertyNames(g)) { const v = g[k]; if (v && typeof v === 'object' && 'deref' in v) seen.push(k) }
      out.references = seen
      return { body: out }
    }`,
  'functions/spin.js': `export default function () { while (true) {} }`,
  'functions/asyncspin.js': `export default async function () { await null; await Promise.resolve(); let i = 0; while (true) { i++ } }`,
  'functions/never.js': `export default function () { return new Promise(() => {}) }`,
  'functions/chain.js': `export default async function () { const step = () => Promise.resolve().then(step); return step() }`,
  'functions/membomb.js': `export default async function () { const a = []; for (;;) a.push(new Array(100000).fill('x' + a.length)) }`,
  'functions/bufbomb.js': `export default async function () { const a = []; for (;;) a.push(new ArrayBuffer(16 * 1024 * 1024)) }`,
  'functions/throwstr.js': `export default async function () { throw 'just a string' }`,
  'functions/thrownull.js': `export default async function () { throw null }`,
  'functions/throwproxy.js': `export default async function () { throw new Proxy({}, { get() { throw new Error('trap') }, getPrototypeOf() { throw new Error('trap') } }) }`,
  'functions/throwgetter.js': `export default async function () { const e = new Error('x'); Object.defineProperty(e, 'message', { get() { while (true) {} } }); throw e }`,
  'functions/huge.js': `export default async function () { return 'x'.repeat(8 * 1024 * 1024) }`,
  'functions/bigint.js': `export default async function () { return { n: 10n } }`,
  'functions/cyclic.js': `export default async function () { const a = {}; a.a = a; return a }`,
  'functions/badoutput.js': `export default async function (events, ctx) { try { ctx.output('nope', 1) } catch (e) {} return 'swallowed' }`,
  'functions/loglots.js': `export default async function (events, ctx) { for (let i = 0; i < 5000; i++) console.log('line', i, 'y'.repeat(20000)); return 'ok' }`,
  'functions/tamper.js': `export default async function () { JSON.stringify = () => 'x'.repeat(100); Promise.prototype.then = function () { throw new Error('no') }; return { fine: true } }`,
  'functions/badinit.js': `throw new Error('module init failed'); export default async () => 1`,
  'functions/initspin.js': `while (true) {} export default async () => 1`,
  'functions/cpuhog.js': `export default async function () { const end = Date.now() + 1500; while (Date.now() < end) {} return 'done' }`,
}

const YAML = `functions:${Object.keys(FILES)
  .map((f) => f.replace('functions/', '').replace('.js', ''))
  // The memory bomb gets a long deadline so that on a loaded machine the heap limit, not the
  // clock, is what stops it.
  .map((n) => (n === 'cpuhog' ? fn(n, 'cpuTimeMs: 100\n    timeoutMs: 3000') : n === 'membomb' ? fn(n, 'timeoutMs: 20000') : fn(n)))
  .join('')}`

describe('hostile function code', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({ yaml: YAML, files: FILES, hosts: 2 })
  })
  afterAll(() => t.stop())

  const event = (): TriggerEvent => ({ id: 'e1', source: 'test', time: new Date().toISOString(), body: {}, meta: {} })
  const invoke = (name: string) => t.gw.invoke(name, [event()])
  const healthy = async () => {
    const r = await invoke('healthy')
    expect(r.ok).toBe(true)
    expect(r.value).toEqual({ body: { ok: true, n: 1 } })
  }

  it('sees no host capabilities', async () => {
    const r = await invoke('probes')
    expect(r.ok).toBe(true)
    const body = (r.value as { body: Record<string, unknown> }).body
    for (const k of ['process', 'require', 'module', 'Buffer', 'fetch', 'setTimeout', 'SharedArrayBuffer', 'Atomics', 'WebAssembly']) {
      expect(body[k], k).toBe('undefined')
    }
    expect(body.import).toBe('refused')
    expect(body.fnProcess).toBe('undefined')
    expect(body.ctorProcess).toBe('undefined')
    expect(body.evalRequire).toBe('undefined')
    expect(body.ivm).toEqual([])
    expect(body.references).toEqual([])
  })

  it.each([
    ['spin', 'SLUICE_ERR_FUNCTION_TIMEOUT'],
    ['asyncspin', 'SLUICE_ERR_FUNCTION_TIMEOUT'],
    ['never', 'SLUICE_ERR_FUNCTION_TIMEOUT'],
    ['membomb', 'SLUICE_ERR_FUNCTION_MEMORY_LIMIT'],
    ['huge', 'SLUICE_ERR_FUNCTION_RESULT_TOO_LARGE'],
    ['bigint', 'SLUICE_ERR_FUNCTION_RESULT_INVALID'],
    ['cyclic', 'SLUICE_ERR_FUNCTION_RESULT_INVALID'],
    ['badoutput', 'SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN'],
    ['throwgetter', 'SLUICE_ERR_FUNCTION_TIMEOUT'],
  ])('%s ends with %s and the gateway keeps serving', async (name, code) => {
    const r = await invoke(name)
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe(code)
    await healthy()
  })

  it('an endless promise chain is stopped by the deadline or the heap limit', async () => {
    const r = await invoke('chain')
    expect(r.ok).toBe(false)
    expect(['SLUICE_ERR_FUNCTION_TIMEOUT', 'SLUICE_ERR_FUNCTION_MEMORY_LIMIT']).toContain(r.error?.code)
    await healthy()
  })

  it('stops a function that uses more CPU time than cpuTimeMs, before its wall deadline', async () => {
    const r = await invoke('cpuhog')
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe('SLUICE_ERR_FUNCTION_CPU_LIMIT')
    await healthy()
  })

  it('an ArrayBuffer bomb is stopped without taking other functions down', async () => {
    const r = await invoke('bufbomb')
    expect(r.ok).toBe(false)
    // Depending on where the allocation fails, V8 reports the heap limit or the host dies.
    expect(['SLUICE_ERR_FUNCTION_MEMORY_LIMIT', 'SLUICE_ERR_FUNCTION_CRASHED', 'SLUICE_ERR_FUNCTION_THREW']).toContain(r.error?.code)
    await healthy()
  })

  it.each([
    ['throwstr', /just a string/],
    ['thrownull', /null/],
    ['throwproxy', /non-Error|cannot be described/],
  ])('%s: a thrown non-Error becomes SLUICE_ERR_FUNCTION_THREW', async (name, message) => {
    const r = await invoke(name)
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(r.error?.message).toMatch(message)
    await healthy()
  })

  it('caps log volume per invocation', async () => {
    const r = await invoke('loglots')
    expect(r.ok).toBe(true)
    expect(r.logs.length).toBeLessThanOrEqual(1001)
    expect(r.logs.at(-1)?.msg).toMatch(/log lines dropped/)
    expect(Math.max(...r.logs.map((l) => l.msg.length))).toBeLessThanOrEqual(8192 + 64)
  })

  it('a function that replaces JSON and Promise only hurts itself', async () => {
    const r = await invoke('tamper')
    expect(r.ok).toBe(true)
    expect(r.value).toEqual({ fine: true })
    await healthy()
  })

  it('module code that throws or spins fails to start with a coded error', async () => {
    const a = await invoke('badinit')
    expect(a.ok).toBe(false)
    expect(a.error?.code).toBe('SLUICE_ERR_SANDBOX_INSTANCE_START')
    expect(a.error?.message).toMatch(/module init failed/)
    const b = await invoke('initspin')
    expect(b.ok).toBe(false)
    expect(b.error?.code).toBe('SLUICE_ERR_FUNCTION_TIMEOUT')
    await healthy()
  })

  it('runs every worker host with --no-node-snapshot', () => {
    const hosts = t.gw.hosts()
    expect(hosts.length).toBe(2)
    for (const h of hosts) expect(h.execArgv).toContain('--no-node-snapshot')
  })
})
