/** Connections, functions with their live numbers, charts over the last minutes, worker hosts, the cluster. */
import { Chart } from './Chart'
import { ClusterPanel } from './Cluster'
import { ms, percent, rate, triggerSummary } from './format'
import { useApi } from './hooks'
import { useLive, type FnSeries } from './live'
import { Link } from './router'
import type { FunctionInfo } from './types'

export function Overview() {
  const state = useLive()
  const { data, error } = useApi<{ functions: FunctionInfo[] }>('/admin/functions')
  const snap = state.snapshot
  const info = new Map((data?.functions ?? []).map((f) => [f.name, f]))
  const names = snap?.functions.map((f) => f.name) ?? data?.functions.map((f) => f.name) ?? []
  const series = (pick: (s: FnSeries) => number[]) => names.map((n) => ({ label: n, values: pick(state.series.get(n) ?? emptySeries(state.times.length)) }))

  return (
    <div class="page overview">
      {error && <p class="error">{error}</p>}
      <section>
        <h2>Functions</h2>
        <table class="grid" data-testid="functions-table">
          <thead>
            <tr>
              <th>Function</th>
              <th>Trigger</th>
              <th class="num">Instances</th>
              <th class="num">Events/s</th>
              <th class="num">Error rate</th>
              <th class="num">p50</th>
              <th class="num">p99</th>
              <th class="num">Backlog</th>
              <th class="num">Dead</th>
            </tr>
          </thead>
          <tbody>
            {names.map((name) => {
              const f = snap?.functions.find((x) => x.name === name)
              const i = info.get(name)
              return (
                <tr key={name} data-testid={`fn-row-${name}`}>
                  <td>
                    <Link href={`/functions/${encodeURIComponent(name)}`}>{name}</Link>
                  </td>
                  <td class="mono">{i ? triggerSummary(i.trigger.kind, i.trigger.options, i.trigger.connection) : f?.trigger}</td>
                  <td class="num" data-testid={`fn-instances-${name}`} data-value={f?.instances ?? 0}>
                    {f ? `${f.instances}` : '–'}
                    {f && f.busy > 0 && <span class="muted"> ({f.busy} busy)</span>}
                  </td>
                  <td class="num">{f ? rate(f.eventsPerSec) : '–'}</td>
                  <td class={`num ${f && f.errorRate > 0 ? 'bad' : ''}`}>{f ? percent(f.errorRate) : '–'}</td>
                  <td class="num">{ms(f?.p50)}</td>
                  <td class="num">{ms(f?.p99)}</td>
                  <td class="num">
                    {f?.backlog ?? '–'}
                    {f?.lag !== undefined && <span class="muted"> (lag {f.lag})</span>}
                  </td>
                  <td class={`num ${f && f.eventsDead > 0 ? 'bad' : ''}`}>{f?.eventsDead ?? '–'}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </section>

      <section class="charts">
        <Chart title="Instances" testid="chart-instances" times={state.times} series={series((s) => s.instances)} integer />
        <Chart title="Events/s" testid="chart-events" times={state.times} series={series((s) => s.eventsPerSec)} />
        <Chart title="Backlog" testid="chart-backlog" times={state.times} series={series((s) => s.backlog)} integer />
      </section>

      <section class="two">
        <div>
          <h2>Connections</h2>
          <table class="grid" data-testid="connections-table">
            <thead>
              <tr>
                <th>Function</th>
                <th>Kind</th>
                <th>Connection</th>
                <th>State</th>
              </tr>
            </thead>
            <tbody>
              {(snap?.connections ?? []).map((c) => (
                <tr key={`${c.function}-${c.kind}`}>
                  <td>{c.function}</td>
                  <td>{c.kind}</td>
                  <td>{c.connection ?? '–'}</td>
                  <td>
                    <span class={`badge ${c.up ? 'ok' : 'bad'}`}>{c.up ? 'up' : 'down'}</span> {c.detail && <span class="muted">{c.detail}</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <div>
          <h2>Worker hosts</h2>
          <table class="grid" data-testid="hosts-table">
            <thead>
              <tr>
                <th>Host</th>
                <th>PID</th>
                <th>State</th>
                <th class="num">Instances</th>
                <th class="num">Restarts</th>
              </tr>
            </thead>
            <tbody>
              {(snap?.hosts ?? []).map((h) => (
                <tr key={h.id}>
                  <td>#{h.id}</td>
                  <td class="mono">{h.pid}</td>
                  <td>
                    <span class={`badge ${h.up ? 'ok' : 'bad'}`}>{h.up ? 'up' : 'down'}</span>
                  </td>
                  <td class="num">{h.instances}</td>
                  <td class="num">{h.restarts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>

      <ClusterPanel />
    </div>
  )
}

export function emptySeries(n: number): FnSeries {
  const z = () => new Array<number>(n).fill(0)
  return { instances: z(), busy: z(), backlog: z(), eventsPerSec: z() }
}
