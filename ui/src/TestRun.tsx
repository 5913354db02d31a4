/**
 * "Test/Run": a JSON editor whose events go to POST /admin/functions/:name/invoke; shows the
 * result, error, outputs and log lines. Sample events are saved per function in localStorage.
 */
import { useState } from 'preact/hooks'
import { api, errorText } from './api'
import { json, ms } from './format'
import type { InvocationResult } from './types'

const DEFAULT_EVENTS = '[\n  { "body": { "hello": "world" } }\n]'

interface Sample {
  name: string
  text: string
}

const samplesKey = (fn: string) => `sluice.samples.${fn}`

function loadSamples(fn: string): Sample[] {
  try {
    const v: unknown = JSON.parse(localStorage.getItem(samplesKey(fn)) ?? '[]')
    return Array.isArray(v) ? (v as Sample[]).filter((s) => typeof s?.name === 'string' && typeof s?.text === 'string') : []
  } catch {
    return []
  }
}

/** The events to send: an array of events, or `{ "events": [...] }`. Throws a readable error. */
export function parseEvents(text: string): unknown[] {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new Error(`not valid JSON: ${(e as Error).message}`)
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && Array.isArray((v as { events?: unknown }).events)) v = (v as { events: unknown[] }).events
  if (!Array.isArray(v)) throw new Error('expected an array of events, e.g. [{ "body": {...} }]')
  if (v.length === 0) throw new Error('give at least one event')
  return v
}

export function TestRun(props: { fn: string; onRan?: () => void }) {
  const [text, setText] = useState(() => loadSamples(props.fn)[0]?.text ?? DEFAULT_EVENTS)
  const [samples, setSamples] = useState(() => loadSamples(props.fn))
  const [sampleName, setSampleName] = useState('')
  const [running, setRunning] = useState(false)
  const [result, setResult] = useState<InvocationResult | undefined>(undefined)
  const [failure, setFailure] = useState<string | undefined>(undefined)

  let parseError: string | undefined
  try {
    parseEvents(text)
  } catch (e) {
    parseError = (e as Error).message
  }

  const save = (list: Sample[]) => {
    localStorage.setItem(samplesKey(props.fn), JSON.stringify(list))
    setSamples(list)
  }

  const run = async () => {
    setRunning(true)
    setFailure(undefined)
    try {
      setResult(await api<InvocationResult>(`/admin/functions/${encodeURIComponent(props.fn)}/invoke`, { method: 'POST', body: { events: parseEvents(text) } }))
      props.onRan?.()
    } catch (e) {
      setResult(undefined)
      setFailure(errorText(e))
    } finally {
      setRunning(false)
    }
  }

  return (
    <section class="test-run" data-testid="test-run">
      <h2>Test/Run</h2>
      <p class="muted">
        Events as JSON: an array of <code>{'{ "body": ..., "key"?, "meta"? }'}</code>. Runs once, synchronously, with no retries.
      </p>
      <textarea
        class="editor"
        spellcheck={false}
        rows={10}
        value={text}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !parseError) void run()
        }}
        data-testid="events-editor"
        aria-label="events JSON"
      />
      {parseError && (
        <p class="error" data-testid="editor-error">
          {parseError}
        </p>
      )}
      <div class="row">
        <button type="button" class="primary" disabled={running || parseError !== undefined} onClick={() => void run()} data-testid="run-button">
          {running ? 'Running…' : 'Run'}
        </button>
        <button type="button" disabled={parseError !== undefined} onClick={() => setText(json(JSON.parse(text)))}>
          Format
        </button>
        <span class="spacer" />
        <input placeholder="sample name" value={sampleName} onInput={(e) => setSampleName((e.target as HTMLInputElement).value)} data-testid="sample-name" />
        <button
          type="button"
          disabled={!sampleName || parseError !== undefined}
          onClick={() => {
            save([{ name: sampleName, text }, ...samples.filter((s) => s.name !== sampleName)])
            setSampleName('')
          }}
          data-testid="sample-save"
        >
          Save sample
        </button>
      </div>
      {samples.length > 0 && (
        <ul class="samples" data-testid="samples">
          {samples.map((s) => (
            <li key={s.name}>
              <button type="button" class="link" onClick={() => setText(s.text)} data-testid={`sample-load-${s.name}`}>
                {s.name}
              </button>
              <button type="button" class="link muted" title="delete sample" onClick={() => save(samples.filter((x) => x.name !== s.name))}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {failure && (
        <p class="error" data-testid="run-failure">
          {failure}
        </p>
      )}
      {result && <RunResult r={result} />}
    </section>
  )
}

function RunResult({ r }: { r: InvocationResult }) {
  return (
    <div class="run-result" data-testid="run-result" data-ok={String(r.ok)}>
      <p>
        <span class={`badge ${r.ok ? 'ok' : 'bad'}`} data-testid="run-outcome">
          {r.ok ? 'ok' : (r.error?.code ?? 'error')}
        </span>{' '}
        {ms(r.durationMs)}
        {r.coldStart && <span class="muted"> · cold start</span>} <span class="muted mono">· {r.invocationId}</span>
      </p>
      {r.ok ? (
        <pre class="value" data-testid="run-value">
          {json(r.value)}
        </pre>
      ) : (
        <pre class="value bad" data-testid="run-error">
          {r.error?.message}
        </pre>
      )}
      {r.outputs.length > 0 && (
        <>
          <h3>Outputs</h3>
          <pre class="value">{r.outputs.map((o) => `${o.name}: ${JSON.stringify(o.value)}`).join('\n')}</pre>
        </>
      )}
      <h3>Logs</h3>
      <Logs lines={r.logs} testid="run-logs" />
    </div>
  )
}

export function Logs(props: { lines: InvocationResult['logs']; testid?: string }) {
  if (props.lines.length === 0) return <p class="muted">no log lines</p>
  return (
    <ol class="logs" data-testid={props.testid}>
      {props.lines.map((l, i) => (
        <li key={i} class={`log-${l.level}`}>
          <span class="level">{l.level}</span> <span class="msg">{l.msg}</span>
        </li>
      ))}
    </ol>
  )
}
