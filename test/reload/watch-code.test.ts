/**
 * `sluice start --watch` while an MQTT stream flows through a function (Mosquitto on
 * 127.0.0.1:1883, a unique topic): editing a file the function imports switches new events to the
 * new version without losing or repeating one; a broken edit keeps the old version running and
 * reports the compile error (log with file:line, /admin/functions).
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { watchAndReload } from '../../src/cli/watch-reload.js'
import type { FunctionInfo } from '../../src/http/admin.js'
import { createLogger } from '../../src/log.js'
import { dropSession } from '../connectors/mqtt/helpers.js'
import { waitFor } from '../helpers/gateway.js'
import { BROKER, doneLines, reloadProject, startFromFile, Stream, uid, versionedFunction, versionModule } from './helpers.js'

function streamYaml(topic: string, clientId: string): string {
  return `connections:
  broker: { kind: mqtt, url: ${BROKER} }
functions:
  ver:
    code: functions/ver.ts
    trigger: { mqtt: { connection: broker, topic: ${topic}, qos: 1, clientId: ${clientId} } }
    batch: { maxSize: 10, maxWaitMs: 5 }
    scale: { min: 0, max: 2 }
`
}

async function setup() {
  const topic = `sluice-reload/${uid('w')}/in`
  const clientId = uid('reload')
  onTestFinished(() => dropSession(BROKER, clientId))
  const project = reloadProject(streamYaml(topic, clientId), { 'functions/ver.ts': versionedFunction(), 'functions/version.ts': versionModule('v1') })
  const { gw, logs } = await startFromFile(project)
  const watcher = watchAndReload(gw, createLogger('debug', logs), { debounceMs: 50 })
  onTestFinished(() => watcher.close())
  const stream = new Stream(topic)
  await stream.start()
  const info = async (): Promise<FunctionInfo> => {
    const r = await fetch(`${gw.url}/admin/functions`)
    const body = (await r.json()) as { functions: FunctionInfo[] }
    return body.functions.find((f) => f.name === 'ver') as FunctionInfo
  }
  return { project, gw, logs, stream, info }
}

/** Waits until every number the broker confirmed was processed; returns the processed lines. */
async function ledgerComplete(logs: { lines: Array<Record<string, unknown>> }, stream: Stream) {
  await stream.stop()
  await waitFor(
    () => {
      const seen = new Set(doneLines(logs.lines, 'ver').map((d) => d.n))
      return [...stream.confirmed.keys()].every((n) => seen.has(n))
    },
    30_000,
    'every confirmed event processed',
  )
  const done = doneLines(logs.lines, 'ver')
  const count = new Map<number, number>()
  for (const d of done) count.set(d.n, (count.get(d.n) ?? 0) + 1)
  return { done, repeated: [...count].filter(([, c]) => c > 1).map(([n]) => n) }
}

describe('hot reload of function code (--watch)', () => {
  it('switches new events to the edited version without losing or repeating one', async () => {
    const { project, gw, logs, stream, info } = await setup()
    await waitFor(() => doneLines(logs.lines, 'ver').length >= 50, 20_000, 'v1 events')
    const before = await info()
    expect(before.version).toMatch(/^[0-9a-f]{16}$/)

    const editedAt = Date.now()
    project.write('functions/version.ts', versionModule('v2'))
    const firstV2 = await waitFor(() => doneLines(logs.lines, 'ver').find((d) => d.version === 'v2'), 20_000, 'a v2 event')
    // Keep the stream going well past the switch.
    await waitFor(() => doneLines(logs.lines, 'ver').filter((d) => d.version === 'v2').length >= 100, 20_000, '100 v2 events')
    const { done, repeated } = await ledgerComplete(logs, stream)

    expect(repeated).toEqual([])
    expect(done.every((d) => stream.confirmed.has(d.n))).toBe(true)
    expect(stream.confirmed.size).toBeGreaterThan(150)
    // One topic is one order key: in publish order, every event before the switch ran v1, every one after it v2.
    const inOrder = [...done].sort((a, b) => a.n - b.n).map((d) => d.version)
    const cut = inOrder.indexOf('v2')
    expect(cut).toBeGreaterThan(0)
    expect(inOrder.slice(0, cut).every((v) => v === 'v1')).toBe(true)
    expect(inOrder.slice(cut).every((v) => v === 'v2')).toBe(true)

    // The new version is shown, and the old version's instances are gone once idle.
    const after = await waitFor(
      async () => {
        const f = await info()
        return f.version !== before.version && Object.keys(f.versions).every((h) => h === f.version) ? f : undefined
      },
      20_000,
      'only new-version instances',
    )
    expect(Date.parse(after.loadedAt)).toBeGreaterThan(Date.parse(before.loadedAt))
    expect(logs.find('reload applied').at(-1)).toMatchObject({ updated: ['ver'], added: [], removed: [] })
    process.stdout.write(`[reload] edit -> first v2 event processed: ${firstV2.time - editedAt} ms (${stream.confirmed.size} events, switch at #${cut})\n`)
  })

  it('keeps the running version on a compile error, reports it, and takes the fix', async () => {
    const { project, logs, stream, info } = await setup()
    await waitFor(() => doneLines(logs.lines, 'ver').length >= 20, 20_000, 'v1 events')
    const v1 = await info()

    project.write('functions/version.ts', "export const VERSION = 'v2' +\n")
    const refused = await waitFor(
      () => logs.lines.find((l) => /^reload refused: .*functions\/version\.ts:2:\d+ /s.test(String(l.msg))),
      20_000,
      'the compile error in the log',
    )
    expect(refused).toMatchObject({ function: 'ver', err: { code: 'SLUICE_ERR_FUNCTION_COMPILE' } })
    const broken = await info()
    expect(broken.version).toBe(v1.version)
    expect(broken.reloadError).toMatchObject({ code: 'SLUICE_ERR_FUNCTION_COMPILE' })
    expect(broken.reloadError?.message).toMatch(/functions\/version\.ts:2:\d+/)
    // The old code keeps processing the stream.
    const mark = doneLines(logs.lines, 'ver').length
    await waitFor(() => doneLines(logs.lines, 'ver').length >= mark + 50, 20_000, 'events after the broken edit')
    expect(doneLines(logs.lines, 'ver').every((d) => d.version === 'v1')).toBe(true)

    project.write('functions/version.ts', versionModule('v3'))
    await waitFor(() => doneLines(logs.lines, 'ver').some((d) => d.version === 'v3'), 20_000, 'a v3 event')
    const fixed = await waitFor(async () => {
      const f = await info()
      return f.version !== v1.version ? f : undefined
    })
    expect(fixed.reloadError).toBeUndefined()
    const { done, repeated } = await ledgerComplete(logs, stream)
    expect(repeated).toEqual([])
    expect(new Set(done.map((d) => d.version))).toEqual(new Set(['v1', 'v3']))
  })
})
