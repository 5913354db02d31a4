/**
 * The hostile-payload run every stream connector goes through (issue 9): deep nesting (arrays,
 * objects, mixed), invalid UTF-8, a 0-byte body, a body above the event limit, random binary,
 * JSON with `__proto__` and `constructor.prototype`, numbers beyond 2^53, lone surrogates (escaped
 * and raw), text that starts like deep JSON, with normal messages interleaved and more sent after.
 *
 * Pass: the gateway (in this process) stays up with no unhandled rejection, every normal message
 * is processed once, each hostile message ends in exactly one place (processed by the function, or
 * one dead letter with the expected code), nothing pollutes Object.prototype (here or in the
 * isolate), and the source holds every message as acknowledged.
 *
 * A connector joins with a `HostileHarness` (see hostile-payloads.test.ts for MQTT, AMQP and
 * Event Hubs): how to start a gateway on a fresh source, send tagged payloads, read a tag back
 * from an event's meta, and tell whether the source saw every message acknowledged.
 */
import { randomBytes } from 'node:crypto'
import { expect, onTestFinished } from 'vitest'
import type { ErrorCode } from '../../src/errors.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

export interface HostileSource {
  t: TestGateway
  /** Sends the payloads in this order; `tag` must come back through `tagOf`. */
  send(items: Array<{ tag: string; bytes: Buffer }>): Promise<void>
  /** The tag of an event (or a dead letter's event) from its meta. */
  tagOf(meta: Record<string, unknown>): string | undefined
  /** True once the source holds every message sent so far as acknowledged (acked, PUBACKed, checkpointed, committed). */
  acked(): Promise<boolean>
}

export interface HostileHarness {
  name: string
  /** The largest message the source carries: hostile payloads beyond it are left out. */
  maxPayloadBytes: number
  /**
   * Starts a gateway (use `hostileGateway`) whose function `fn` reads a fresh source (unique
   * names); registers its own cleanup.
   */
  start(): Promise<HostileSource>
}

/** Logs `seen {tagMeta, type, polluted}` for every event. */
export const HOSTILE_FUNCTION = `export default async function (events, ctx) {
  for (const e of events) ctx.log.info('seen ' + JSON.stringify({ id: e.id, meta: e.meta, type: typeof e.body, polluted: ({}).polluted === true }))
}`

/** A gateway running HOSTILE_FUNCTION as `fn` on `trigger`, stopped after the test. */
export async function hostileGateway(connections: string, trigger: string): Promise<TestGateway> {
  const t = await startGateway({
    yaml: `connections:\n${connections}\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: ${trigger}\n    batch: { maxSize: 20, maxWaitMs: 10 }\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 20 }\n`,
    files: { 'functions/fn.js': HOSTILE_FUNCTION },
  })
  onTestFinished(() => t.stop())
  return t
}

interface Hostile {
  name: string
  bytes: Buffer
  /** processed: the function gets it; a code: it is dead-lettered with that code. */
  expect: 'processed' | ErrorCode
}

const text = (s: string) => Buffer.from(s, 'utf8')

export const HOSTILE: Hostile[] = [
  { name: 'deep-array', bytes: text(`${'['.repeat(5000)}${']'.repeat(5000)}`), expect: 'SLUICE_ERR_EVENT_TOO_DEEP' },
  { name: 'deep-object', bytes: text(`${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`), expect: 'SLUICE_ERR_EVENT_TOO_DEEP' },
  { name: 'deep-mixed', bytes: text(`${'[{"a":'.repeat(3000)}null${'}]'.repeat(3000)}`), expect: 'SLUICE_ERR_EVENT_TOO_DEEP' },
  { name: 'deep-but-allowed', bytes: text(`${'['.repeat(500)}${']'.repeat(500)}`), expect: 'processed' },
  { name: 'invalid-utf8', bytes: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0xc3, 0x28, 0xa0, 0xa1, 0xff, 0x7d]), expect: 'processed' },
  { name: 'empty', bytes: Buffer.alloc(0), expect: 'processed' },
  { name: 'binary', bytes: randomBytes(4096), expect: 'processed' },
  { name: 'huge', bytes: Buffer.alloc(7 * 1024 * 1024, 0x61), expect: 'SLUICE_ERR_EVENT_TOO_LARGE' },
  { name: 'huge-json', bytes: text(JSON.stringify({ s: 'x'.repeat(7 * 1024 * 1024) })), expect: 'SLUICE_ERR_EVENT_TOO_LARGE' },
  { name: 'proto', bytes: text('{"__proto__":{"polluted":true},"a":1}'), expect: 'processed' },
  { name: 'constructor-prototype', bytes: text('{"constructor":{"prototype":{"polluted":true}}}'), expect: 'processed' },
  { name: 'big-numbers', bytes: text('{"n":9007199254740993,"m":-123456789012345678901234567890,"e":1e400}'), expect: 'processed' },
  { name: 'lone-surrogates-escaped', bytes: text('{"s":"\\ud800 and \\udfff","k":{"\\udbff":1}}'), expect: 'processed' },
  { name: 'lone-surrogate-raw', bytes: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), expect: 'processed' },
  // Refused on its bracket depth before any parse, JSON or not: the deep value is never built.
  { name: 'deep-brackets-not-json', bytes: text(`${'['.repeat(5000)} not json`), expect: 'SLUICE_ERR_EVENT_TOO_DEEP' },
  { name: 'brackets-in-a-string', bytes: text(JSON.stringify('['.repeat(5000))), expect: 'processed' },
  { name: 'controls', bytes: Buffer.from('{"a":"\\u0000"}\u0000\u0001\u001b[31m', 'utf8'), expect: 'processed' },
]

interface Place {
  seen: number
  dead: Array<{ code: string }>
}

/** Runs the hostile set through `h`: see the file header for what passes. */
export async function expectSurvivesHostilePayloads(h: HostileHarness): Promise<void> {
  const rejections: unknown[] = []
  const onRejection = (r: unknown) => rejections.push(r)
  process.on('unhandledRejection', onRejection)
  onTestFinished(() => {
    process.off('unhandledRejection', onRejection)
  })
  const src = await h.start()
  const hostile = HOSTILE.filter((p) => p.bytes.length <= h.maxPayloadBytes)
  const items: Array<{ tag: string; bytes: Buffer }> = []
  hostile.forEach((p, i) => {
    items.push({ tag: `normal-${i}`, bytes: text(JSON.stringify({ normal: i })) })
    items.push({ tag: `hostile-${p.name}`, bytes: p.bytes })
  })
  await src.send(items)
  const after = Array.from({ length: 5 }, (_, i) => ({ tag: `after-${i}`, bytes: text(JSON.stringify({ after: i })) }))
  await src.send(after)
  const tags = [...items, ...after].map((x) => x.tag)

  const places = async (): Promise<Map<string, Place>> => {
    const out = new Map<string, Place>(tags.map((t) => [t, { seen: 0, dead: [] }]))
    for (const l of src.t.logs.lines) {
      if (l.source !== 'function' || typeof l.msg !== 'string' || !l.msg.startsWith('seen ')) continue
      const s = JSON.parse(l.msg.slice(5)) as { meta: Record<string, unknown>; polluted: boolean }
      expect(s.polluted).toBe(false)
      const p = out.get(src.tagOf(s.meta) ?? '')
      if (p) p.seen++
    }
    for (const d of await src.t.gw.listDeadLetters({ function: 'fn', limit: 1000 })) {
      const p = out.get(src.tagOf(d.event.meta) ?? '')
      if (p) p.dead.push({ code: d.error.code })
    }
    return out
  }
  await waitFor(
    async () => [...(await places()).values()].every((p) => p.seen + p.dead.length > 0),
    120_000,
    `every ${h.name} message processed or dead-lettered`,
  )
  await waitFor(() => src.acked(), 60_000, `every ${h.name} message acknowledged at the source`)

  const final = await places()
  const summary = Object.fromEntries(
    [...final].map(([tag, p]) => [
      tag,
      p.seen === 1 && p.dead.length === 0 ? 'processed' : p.seen === 0 && p.dead.length === 1 ? p.dead[0]?.code : `seen ${p.seen}, dead ${p.dead.length}`,
    ]),
  )
  const expected = Object.fromEntries(
    tags.map((tag) => [tag, tag.startsWith('hostile-') ? (hostile.find((p) => `hostile-${p.name}` === tag)?.expect ?? '?') : 'processed']),
  )
  expect(summary).toEqual(expected)
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  expect(rejections).toEqual([])
}
