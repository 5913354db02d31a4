/** One function: its config, live numbers and chart, Test/Run, and recent invocations with logs. */
import { Fragment } from 'preact'
import { useState } from 'preact/hooks'
import { Chart } from './Chart'
import { dateTime, json, ms, percent, rate, time } from './format'
import { useApi } from './hooks'
import { useLive } from './live'
import { emptySeries } from './Overview'
import { Link } from './router'
import { Logs, TestRun } from './TestRun'
import type { FunctionInfo, InvocationRecord } from './types'

type Detail = FunctionInfo & { recent: InvocationRecord[] }

export function FunctionPage({ name }: { name: string }) {
  const state = useLive()
  const live = state.snapshot?.functions.find((f) => f.name === name)
  // Refetch when the live counters say something finished (at most once per snapshot).
  const refresh = `${live?.invocations ?? 0}/${live?.eventsDead ?? 0}`
  const [ran, setRan] = useState(0)
  const { data: f, error } = useApi<Detail>(`/admin/functions/${encodeURIComponent(name)}`, `${refresh}/${ran}`)
  const s = state.series.get(name) ?? emptySeries(state.times.length)

  if (error && !f) return <p class="error">{error}</p>
  return (
    <div class="page function" data-testid="function-page">
      <p class="crumbs">
        <Link href="/">Overview</Link> / <strong data-testid="function-name">{name}</strong>
      </p>
      {f?.reloadError && (
        <div class="error" data-testid="reload-error">
          The latest reload could not load this function ({dateTime(f.reloadError.at)}); version {f.version.slice(0, 8)} keeps running:
          <pre class="mono">{`${f.reloadError.message} [${f.reloadError.code}]`}</pre>
        </div>
      )}
      <section class="stats">
        <Stat
          label="Instances"
          value={live ? `${live.instances}` : '–'}
          sub={live ? `${live.busy} busy · scale ${f?.scale.min ?? '?'}–${f?.scale.max ?? '?'}` : ''}
          testid="stat-instances"
        />
        <Stat label="Events/s" value={live ? rate(live.eventsPerSec) : '–'} />
        <Stat label="Error rate" value={live ? percent(live.errorRate) : '–'} />
        <Stat label="p50 / p99" value={`${ms(live?.p50)} / ${ms(live?.p99)}`} />
        <Stat label="Backlog" value={live ? String(live.backlog) : '–'} sub={live?.lag !== undefined ? `source lag ${live.lag}` : ''} />
        <Stat
          label="Invocations"
          value={live ? String(live.invocations) : '–'}
          sub={live ? `${live.failures} failed · ${live.retries} retries · ${live.eventsDead} dead` : ''}
        />
      </section>
      <section class="charts">
        <Chart
          title="Instances"
          testid="chart-fn-instances"
          times={state.times}
          series={[
            { label: 'instances', values: s.instances },
            { label: 'busy', values: s.busy },
          ]}
          integer
        />
        <Chart
          title="Events/s and backlog"
          testid="chart-fn-events"
          times={state.times}
          series={[
            { label: 'events/s', values: s.eventsPerSec },
            { label: 'backlog', values: s.backlog },
          ]}
        />
      </section>
      <div class="two">
        <TestRun fn={name} onRan={() => setRan((n) => n + 1)} />
        {f && <Config f={f} />}
      </div>
      <section>
        <h2>Recent invocations</h2>
        {f && <Recent fn={name} items={f.recent} />}
      </section>
    </div>
  )
}

function Stat(props: { label: string; value: string; sub?: string; testid?: string }) {
  return (
    <div class="stat" data-testid={props.testid}>
      <div class="label">{props.label}</div>
      <div class="value">{props.value}</div>
      {props.sub && <div class="sub muted">{props.sub}</div>}
    </div>
  )
}

function Config({ f }: { f: Detail }) {
  const draining = Object.entries(f.versions ?? {}).filter(([h]) => h !== f.version)
  const rows: Array<[string, string]> = [
    ['code', f.code],
    [
      'version',
      `${f.version.slice(0, 8)}, loaded ${dateTime(f.loadedAt)}${draining.length > 0 ? ` (draining: ${draining.map(([h, n]) => `${h.slice(0, 8)} ×${n}`).join(', ')})` : ''}`,
    ],
    ['trigger', `${f.trigger.kind}${f.trigger.connection ? ` @${f.trigger.connection}` : ''} ${JSON.stringify(f.trigger.options)}`],
    ['batch', f.trigger.kind === 'http' ? 'one request per invocation' : `maxSize ${f.batch.maxSize}, maxWaitMs ${f.batch.maxWaitMs}`],
    ['scale', `min ${f.scale.min}, max ${f.scale.max}, idle ${f.scale.idleTimeoutMs} ms`],
    ['retry', `${f.retry.maxAttempts} attempts, ${f.retry.backoff} ${f.retry.initialDelayMs}–${f.retry.maxDelayMs} ms`],
    ['limits', `timeout ${f.limits.timeoutMs} ms, cpu ${f.limits.cpuTimeMs} ms, ${f.limits.memoryMb} MB, backlog ${f.limits.maxBacklog}`],
    ['order key', f.orderKey],
    ['outputs', f.outputs.length > 0 ? f.outputs.join(', ') : '–'],
  ]
  return (
    <section class="config" data-testid="function-config">
      <h2>Configuration</h2>
      <dl>
        {rows.map(([k, v]) => (
          <Fragment key={k}>
            <dt>{k}</dt>
            <dd class="mono">{v}</dd>
          </Fragment>
        ))}
      </dl>
    </section>
  )
}

/** Rows shown before "show all". */
const RECENT_ROWS = 12

function Recent({ fn, items }: { fn: string; items: InvocationRecord[] }) {
  const [open, setOpen] = useState<string | undefined>(undefined)
  const [all, setAll] = useState(false)
  if (items.length === 0) return <p class="muted">No invocations yet.</p>
  const shown = all ? items : items.slice(0, RECENT_ROWS)
  return (
    <>
      <table class="grid recent" data-testid="recent-table">
        <thead>
          <tr>
            <th>Time</th>
            <th>Kind</th>
            <th class="num">Events</th>
            <th class="num">Duration</th>
            <th>Outcome</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <Fragment key={r.invocationId}>
              <tr class={r.ok ? '' : 'failed'} data-testid="recent-row" onClick={() => setOpen(open === r.invocationId ? undefined : r.invocationId)}>
                <td class="mono">{time(r.time)}</td>
                <td>{r.kind}</td>
                <td class="num">{r.size}</td>
                <td class="num">{ms(r.durationMs)}</td>
                <td>
                  <span class={`badge ${r.ok ? (r.failed > 0 ? 'warn' : 'ok') : 'bad'}`}>
                    {r.ok ? (r.failed > 0 ? `${r.failed} failed` : 'ok') : (r.error?.code ?? 'error')}
                  </span>
                  {r.coldStart && <span class="muted"> cold</span>}
                </td>
                <td class="muted">{lineCount(r.logLines ?? r.logs.length)} ▾</td>
              </tr>
              {open === r.invocationId && (
                <tr class="detail">
                  <td colSpan={6}>
                    {r.error && <pre class="value bad">{`${r.error.code}: ${r.error.message}`}</pre>}
                    {r.result !== undefined && <pre class="value">{pretty(r.result)}</pre>}
                    <InvocationLogs fn={fn} r={r} />
                  </td>
                </tr>
              )}
            </Fragment>
          ))}
        </tbody>
      </table>
      {items.length > shown.length && (
        <button type="button" class="link" onClick={() => setAll(true)}>
          show all {items.length}
        </button>
      )}
    </>
  )
}

const lineCount = (n: number) => (n === 1 ? '1 log line' : n > 1 ? `${n} log lines` : '')

/**
 * The logs of an opened invocation: the list carries a preview of a few lines, so the rest is
 * fetched; the gateway keeps full logs of its newest invocations only, so older ones show the preview.
 */
function InvocationLogs({ fn, r }: { fn: string; r: InvocationRecord }) {
  const { data, error } = useApi<InvocationRecord>(`/admin/functions/${encodeURIComponent(fn)}/invocations/${encodeURIComponent(r.invocationId)}`)
  const total = r.logLines ?? r.logs.length
  return (
    <>
      <Logs lines={data?.logs ?? r.logs} />
      {!data && error && total > 0 && (
        <p class="muted" data-testid="logs-preview-only">
          Showing the first {r.logs.length} of {total} lines: the gateway no longer keeps this invocation's full logs (see its log output, source "function").
        </p>
      )}
    </>
  )
}

function pretty(text: string): string {
  try {
    return json(JSON.parse(text))
  } catch {
    return text
  }
}
