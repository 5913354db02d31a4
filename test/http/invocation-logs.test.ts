/**
 * Function logs against a real gateway: capped per invocation inside the isolate (so they never
 * invalidate a result nor fill the gateway's memory), a preview in the recent-invocations list,
 * and all kept lines per invocation at GET /admin/functions/:name/invocations/:id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FunctionInfo } from '../../src/http/admin.js'
import { FULL_LOGS_CHARS, LOG_PREVIEW_CHARS, LOG_PREVIEW_LINES, RECENT, type InvocationRecord } from '../../src/router/stats.js'
import { LIMITS } from '../../src/sandbox/protocol.js'
import type { InvocationResult, LogLine } from '../../src/sdk/index.js'
import { dropSession, publish, SYSTEM_BROKER, uid } from '../connectors/mqtt/helpers.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

const KEY = `logs-test-key-${process.pid}-0123456789`
const auth = { 'x-sluice-key': KEY }

/** Size of log lines as they travel in a result envelope (JSON, UTF-8). */
const wireBytes = (lines: LogLine[]) => Buffer.byteLength(JSON.stringify(lines))

describe('function logs', () => {
  let t: TestGateway
  const c = uid('c')
  const topic = `${uid('t')}/logs`
  const get = (path: string) => fetch(`${t.url}${path}`, { headers: auth })
  const invoke = async (fn: string, body: unknown = null): Promise<InvocationResult> => {
    const res = await fetch(`${t.url}/admin/functions/${fn}/invoke`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ body }] }),
    })
    expect(res.status).toBe(200)
    return (await res.json()) as InvocationResult
  }

  beforeAll(async () => {
    t = await startGateway({
      yaml: `admin: { key: ${KEY} }
connections:
  ${c}: { kind: mqtt, url: "${SYSTEM_BROKER}" }
functions:
  lg-noisy:
    code: functions/noisy.ts
    trigger: { http: { route: noisy, methods: [POST], auth: anonymous } }
  lg-control:
    code: functions/control.ts
    trigger: { http: { route: control, methods: [POST], auth: anonymous } }
  lg-control-stream:
    code: functions/control.ts
    trigger: { mqtt: { connection: ${c}, topic: "${topic}", qos: 1 } }
    retry: { maxAttempts: 1 }
  lg-unicode:
    code: functions/unicode.ts
    trigger: { http: { route: unicode, methods: [POST], auth: anonymous } }
  lg-callable:
    code: functions/callable.ts
    trigger: { http: { route: callable, methods: [POST], auth: anonymous } }
`,
      files: {
        // The review's reproduction: 1,000 lines of 8 KB per call.
        'functions/noisy.ts': `const line = 'x'.repeat(8192)
export default async (events: any[], ctx: any) => {
  for (let i = 0; i < 1000; i++) ctx.log.info(line)
  return { status: 200, body: { n: events.length } }
}
`,
        // 1,000 lines of control characters: ~12 MB once escaped, over the result limit.
        'functions/control.ts': `const line = '\\u0001'.repeat(2000)
export default async (events: any[], ctx: any) => {
  for (let i = 0; i < 1000; i++) ctx.log(line)
  return { done: true }
}
`,
        'functions/unicode.ts': `export default async (events: any[], ctx: any) => {
  ctx.log('\u00e9'.repeat(5000))
  ctx.log('\u{1F600}'.repeat(3000))
  ctx.log('lone \\ud800 surrogate', '\\u4e2d\\u6587')
  return 'ok'
}
`,
        'functions/callable.ts': `export default async (events: any[], ctx: any) => {
  ctx.log('called as a function', 42)
  ctx.log.info('info')
  ctx.log.warn('warn')
  ctx.log.error('error')
  ctx.log.debug('debug')
  return { callable: typeof ctx.log, frozen: Object.isFrozen(ctx.log) }
}
`,
      },
    })
  })
  afterAll(async () => {
    await t.stop()
    await dropSession(SYSTEM_BROKER, `sluice-${c}-lg-control-stream`)
  })

  it('keeps GET /admin/functions/:name small after 50 calls logging 1,000 lines of 8 KB, and serves each kept invocation with its capped logs', async () => {
    for (let i = 0; i < RECENT; i++) {
      const res = await fetch(`${t.url}/api/noisy`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      expect(res.status).toBe(200)
    }
    const res = await get('/admin/functions/lg-noisy')
    expect(res.status).toBe(200)
    const text = await res.text()
    const f = JSON.parse(text) as FunctionInfo & { recent: InvocationRecord[] }
    expect(f.recent.length).toBe(RECENT)
    // Per record: a preview of at most LOG_PREVIEW_LINES lines of LOG_PREVIEW_CHARS (escaped at
    // most 6x), a 2 KiB result preview (escaped at most 2x) and 1 KiB for the other fields.
    const perRecord = LOG_PREVIEW_LINES * (6 * LOG_PREVIEW_CHARS + 64) + 2 * 2048 + 1024
    expect(Buffer.byteLength(text)).toBeLessThan(RECENT * perRecord + 16 * 1024)
    for (const r of f.recent) {
      expect(r.logs.length).toBeLessThanOrEqual(LOG_PREVIEW_LINES)
      expect(r.logLines).toBeGreaterThan(r.logs.length)
    }

    const newest = f.recent[0] as InvocationRecord
    const one = await get(`/admin/functions/lg-noisy/invocations/${newest.invocationId}`)
    expect(one.status).toBe(200)
    const full = (await one.json()) as InvocationRecord
    expect(full.invocationId).toBe(newest.invocationId)
    expect(full.logs.length).toBe(newest.logLines)
    const kept = full.logs.slice(0, -1)
    expect(kept.length).toBeGreaterThan(LOG_PREVIEW_LINES)
    expect(wireBytes(kept)).toBeLessThanOrEqual(LIMITS.logBytes)
    for (const l of kept) expect(Buffer.byteLength(l.msg)).toBeLessThanOrEqual(LIMITS.logLineBytes)
    expect(kept[0]?.msg).toBe('x'.repeat(8192))
    expect(full.logs.at(-1)).toMatchObject({ level: 'warn', msg: expect.stringMatching(/^\d+ log lines dropped, 1 line truncated/) })

    // Full logs are kept within a byte budget per function: the oldest of 50 capped invocations
    // are beyond it, and answer with a coded 404.
    expect(RECENT * LIMITS.logBytes).toBeGreaterThan(FULL_LOGS_CHARS)
    const oldest = f.recent.at(-1) as InvocationRecord
    const gone = await get(`/admin/functions/lg-noisy/invocations/${oldest.invocationId}`)
    expect(gone.status).toBe(404)
    expect(((await gone.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'SLUICE_ERR_FUNCTION_INVOCATION_NOT_FOUND',
      message: expect.stringMatching(/evicted/),
    })
  })

  it('answers unknown invocations with a coded 404 and guards the route with the admin key', async () => {
    const unknown = await get('/admin/functions/lg-noisy/invocations/no-such-invocation')
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_FUNCTION_INVOCATION_NOT_FOUND')
    const noFn = await get('/admin/functions/lg-nope/invocations/x')
    expect(((await noFn.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_FUNCTION_NOT_FOUND')
    const anon = await fetch(`${t.url}/admin/functions/lg-noisy/invocations/no-such-invocation`)
    expect(anon.status).toBe(401)
  })

  it('truncates logs that escape past the result limit instead of failing the invocation', async () => {
    const r = await invoke('lg-control')
    expect(r.error).toBeUndefined()
    expect(r.ok).toBe(true)
    expect(r.value).toEqual({ done: true })
    const kept = r.logs.slice(0, -1)
    expect(kept.length).toBeGreaterThan(0)
    expect(wireBytes(kept)).toBeLessThanOrEqual(LIMITS.logBytes)
    for (const l of kept) {
      expect(Buffer.byteLength(JSON.stringify(l.msg)) - 2).toBeLessThanOrEqual(LIMITS.logLineBytes)
      expect(l.msg).toMatch(/^\u0001+\.\.\.\[truncated\]$/)
    }
    expect(r.logsDropped).toEqual({ droppedLines: 1000 - kept.length, truncated: kept.length, droppedChars: expect.any(Number) })
    expect(r.logsDropped?.droppedChars).toBeGreaterThan((1000 - kept.length) * 2000)
    expect(r.logs.at(-1)?.msg).toMatch(/log lines dropped/)
  })

  it('measures lines in UTF-8 with escapes, and never splits a surrogate pair when it cuts one', async () => {
    const r = await invoke('lg-unicode')
    expect(r.ok).toBe(true)
    const [e, emoji, mixed] = r.logs as [LogLine, LogLine, LogLine]
    for (const l of [e, emoji]) {
      expect(l.msg.endsWith('...[truncated]')).toBe(true)
      expect(Buffer.byteLength(JSON.stringify(l.msg)) - 2).toBeLessThanOrEqual(LIMITS.logLineBytes)
      expect(Buffer.byteLength(JSON.stringify(l.msg)) - 2).toBeGreaterThan(LIMITS.logLineBytes - 16)
    }
    expect(e.msg).toMatch(/^\u00e9+\.\.\.\[truncated\]$/)
    expect(emoji.msg).toMatch(/^(\u{1F600})+\.\.\.\[truncated\]$/u)
    expect(mixed.msg).toBe('lone \ud800 surrogate \u4e2d\u6587')
    expect(r.logsDropped).toMatchObject({ droppedLines: 0, truncated: 2 })
  })

  it('does not dead-letter a stream event whose logs escape past the result limit', async () => {
    await publish(SYSTEM_BROKER, topic, [{ n: 1 }])
    const f = await waitFor(
      async () => {
        const info = (await (await get('/admin/functions/lg-control-stream')).json()) as FunctionInfo & { recent: InvocationRecord[] }
        return info.counts.eventsDone + info.counts.eventsDead > 0 && info
      },
      20_000,
      'the event to finish',
    )
    expect(f.counts).toMatchObject({ eventsDone: 1, eventsDead: 0, failures: 0 })
    expect(f.recent[0]).toMatchObject({ kind: 'batch', ok: true })
    const letters = (await (await get('/admin/dead-letters?function=lg-control-stream')).json()) as { items: unknown[] }
    expect(letters.items).toEqual([])
  })

  it('ctx.log is callable (info level) as well as ctx.log.info/warn/error/debug, on a cold and a warm instance', async () => {
    for (const run of ['cold', 'warm']) {
      const r = await invoke('lg-callable')
      expect(r.ok, run).toBe(true)
      expect(r.value).toEqual({ callable: 'function', frozen: true })
      expect(
        r.logs.map((l) => [l.level, l.msg]),
        run,
      ).toEqual([
        ['info', 'called as a function 42'],
        ['info', 'info'],
        ['warn', 'warn'],
        ['error', 'error'],
        ['debug', 'debug'],
      ])
      expect(r.logsDropped).toBeUndefined()
    }
  })
})
