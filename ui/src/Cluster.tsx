/**
 * The Cluster panel: one row per gateway instance sharing the store (GET /admin/instances, every
 * two seconds), and the warnings that several live instances raise (MQTT trigger without share,
 * per-key order a source cannot keep, a duplicate instance id).
 */
import { useEffect, useState } from 'preact/hooks'
import { useApi } from './hooks'

interface InstanceRow {
  id: string
  status: 'live' | 'expired' | 'stopped'
  self: boolean
  version: string
  host: string
  startedAt: string
  lastHeartbeat: string
  heartbeatAgeMs: number
  state: string
  connections: Array<{ function: string; up: boolean }>
  backlog: number
  inflight: number
  sessions: string[]
  takenOver?: { by: string; at: string; sessions: number; messages: number }
}

interface ClusterView {
  self: string
  expiryMs: number
  store: string
  instances: InstanceRow[]
  warnings: Array<{ code: string; message: string; function?: string; docs?: string }>
  error?: string
}

const STATUS_CLASS: Record<InstanceRow['status'], string> = { live: 'ok', expired: 'bad', stopped: 'warn' }

function ago(ms: number): string {
  if (ms < 1000) return 'now'
  if (ms < 120_000) return `${Math.round(ms / 1000)} s ago`
  return `${Math.round(ms / 60_000)} min ago`
}

export function ClusterPanel() {
  const [tick, setTick] = useState(0)
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 2000)
    return () => clearInterval(t)
  }, [])
  const { data, error } = useApi<ClusterView>('/admin/instances', tick)
  const live = data?.instances.filter((i) => i.status === 'live').length ?? 0
  return (
    <section data-testid="cluster-panel">
      <h2>
        Cluster{' '}
        <span class="muted">
          ({live} live{data ? `, store ${data.store}` : ''})
        </span>
      </h2>
      {error && <p class="error">{error}</p>}
      {data?.error && <p class="error">registry unavailable: {data.error}</p>}
      {(data?.warnings ?? []).map((w) => (
        <p class="error" key={`${w.code}-${w.function ?? ''}`} data-testid="cluster-warning" data-code={w.code}>
          <span class="mono">{w.code}</span> {w.message}
        </p>
      ))}
      <table class="grid" data-testid="cluster-table">
        <thead>
          <tr>
            <th>Instance</th>
            <th>Status</th>
            <th>Version</th>
            <th>Started</th>
            <th>Heartbeat</th>
            <th class="num">Connections up</th>
            <th class="num">Backlog</th>
            <th class="num">In flight</th>
            <th>Sessions</th>
          </tr>
        </thead>
        <tbody>
          {(data?.instances ?? []).map((i) => (
            <tr key={i.id} data-testid={`instance-row-${i.id}`} data-status={i.status}>
              <td class="mono">
                {i.id}
                {i.self && <span class="muted"> (this)</span>}
              </td>
              <td>
                <span class={`badge ${STATUS_CLASS[i.status]}`}>{i.status}</span>
                {i.takenOver && (
                  <span class="muted">
                    {' '}
                    sessions taken over by {i.takenOver.by} ({i.takenOver.messages} messages)
                  </span>
                )}
              </td>
              <td class="mono">{i.version}</td>
              <td>{new Date(i.startedAt).toLocaleTimeString()}</td>
              <td>{ago(i.heartbeatAgeMs)}</td>
              <td class="num">
                {i.connections.filter((c) => c.up).length}/{i.connections.length}
              </td>
              <td class="num">{i.backlog}</td>
              <td class="num">{i.inflight}</td>
              <td class="mono">{i.sessions.join(', ') || '–'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  )
}
