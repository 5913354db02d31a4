/**
 * Dead letters: filter by function and error code, see error, attempts and source position,
 * replay one, or replay every letter matching the filter (POST /admin/dead-letters/replay).
 */
import { Fragment } from 'preact'
import { useState } from 'preact/hooks'
import { api, errorText } from './api'
import { dateTime, json } from './format'
import { useApi } from './hooks'
import { useActivity, useLive } from './live'
import type { DeadLetter, Outcome } from './types'

interface BulkResult {
  matched: number
  done: number
  results: Array<{ id: string; outcome?: Outcome; error?: { code: string; message: string } }>
}

/** Source attributes that say where in the source an event was (shown as its position). */
const POSITION_KEYS = ['topic', 'partition', 'offset', 'sequenceNumber', 'queue', 'routingKey', 'deliveryTag', 'messageId', 'scheduledAt', 'method', 'path']

export function DeadLetters() {
  const state = useLive()
  const [fn, setFn] = useState('')
  const [code, setCode] = useState('')
  const [dirty, setDirty] = useState(0)
  const [open, setOpen] = useState<string | undefined>(undefined)
  const [message, setMessage] = useState<{ text: string; bad?: boolean } | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  const query = new URLSearchParams({ limit: '500', ...(fn ? { function: fn } : {}), ...(code ? { code } : {}) })
  const { data, error } = useApi<{ items: DeadLetter[] }>(`/admin/dead-letters?${query.toString()}`, dirty)
  useActivity((a) => {
    if (a.dead.length > 0) setDirty((d) => d + 1)
  }, [])
  const names = state.snapshot?.functions.map((f) => f.name) ?? []
  const items = data?.items ?? []

  const replay = async (id: string) => {
    setBusy(true)
    try {
      const r = await api<{ id: string; outcome: Outcome }>(`/admin/dead-letters/${encodeURIComponent(id)}/replay`, { method: 'POST' })
      setMessage(r.outcome.status === 'done' ? { text: `Replayed ${id}: done` } : { text: `Replayed ${id}: ${describe(r.outcome)}`, bad: true })
    } catch (e) {
      setMessage({ text: errorText(e), bad: true })
    } finally {
      setBusy(false)
      setDirty((d) => d + 1)
    }
  }

  const replayAll = async () => {
    setBusy(true)
    setMessage({ text: `Replaying ${items.length} letters…` })
    try {
      const r = await api<BulkResult>('/admin/dead-letters/replay', {
        method: 'POST',
        body: { ...(fn ? { function: fn } : {}), ...(code ? { code } : {}), limit: 1000 },
      })
      const again = r.results.filter((x) => x.outcome?.status === 'dead').length
      const errors = r.results.filter((x) => x.error).length
      setMessage({
        text: `Replayed ${r.matched}: ${r.done} done, ${again} failed again${errors > 0 ? `, ${errors} could not be replayed` : ''}`,
        bad: r.done < r.matched,
      })
    } catch (e) {
      setMessage({ text: errorText(e), bad: true })
    } finally {
      setBusy(false)
      setDirty((d) => d + 1)
    }
  }

  return (
    <div class="page dead-letters" data-testid="dead-letters-page">
      <section>
        <h2>Dead letters</h2>
        <div class="row filters">
          <label>
            Function{' '}
            <select value={fn} onChange={(e) => setFn((e.target as HTMLSelectElement).value)} data-testid="filter-function">
              <option value="">all</option>
              {names.map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
          <label>
            Error code{' '}
            <input value={code} placeholder="SLUICE_ERR_…" onChange={(e) => setCode((e.target as HTMLInputElement).value.trim())} data-testid="filter-code" />
          </label>
          <span class="spacer" />
          <span class="muted" data-testid="dead-count" data-value={items.length}>
            {items.length === 500 ? '500+' : items.length} matching
          </span>
          <button type="button" class="primary" disabled={busy || items.length === 0} onClick={() => void replayAll()} data-testid="replay-all">
            Replay all matching
          </button>
        </div>
        {message && (
          <p class={message.bad ? 'error' : 'notice'} data-testid="replay-message">
            {message.text}
          </p>
        )}
        {error && <p class="error">{error}</p>}
        {items.length === 0 ? (
          <p class="muted" data-testid="no-dead-letters">
            No dead letters{fn || code ? ' match the filter' : ''}.
          </p>
        ) : (
          <table class="grid" data-testid="dead-letters-table">
            <thead>
              <tr>
                <th>Failed at</th>
                <th>Function</th>
                <th>Error</th>
                <th class="num">Attempts</th>
                <th>Source position</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {items.map((d) => (
                <Fragment key={d.id}>
                  <tr data-testid="dead-letter-row" data-id={d.id} data-event-id={d.event.id}>
                    <td class="mono">{dateTime(d.failedAt)}</td>
                    <td>{d.function}</td>
                    <td>
                      <span class="badge bad">{d.error.code}</span> <span class="err-msg">{d.error.message}</span>
                    </td>
                    <td class="num" data-testid="dead-attempts">
                      {d.attempts}
                    </td>
                    <td class="mono">{position(d)}</td>
                    <td class="actions">
                      <button type="button" class="link" onClick={() => setOpen(open === d.id ? undefined : d.id)}>
                        event
                      </button>
                      <button type="button" disabled={busy} onClick={() => void replay(d.id)} data-testid="replay-one">
                        Replay
                      </button>
                    </td>
                  </tr>
                  {open === d.id && (
                    <tr class="detail">
                      <td colSpan={6}>
                        <pre class="value">{json(d.event)}</pre>
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  )
}

function position(d: DeadLetter): string {
  const parts = [d.event.source]
  if (d.event.key !== undefined) parts.push(`key ${d.event.key}`)
  for (const k of POSITION_KEYS) {
    const v = d.event.meta[k]
    if (v !== undefined && v !== null && typeof v !== 'object') parts.push(`${k} ${String(v)}`)
  }
  return parts.join(' · ')
}

function describe(o: Outcome): string {
  if (o.status === 'dead') return `failed again (${o.error.code}), new letter ${o.deadLetterId}`
  return o.status
}
