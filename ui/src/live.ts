/**
 * The live feed (GET /admin/events, server-sent events) read with fetch streaming, so the admin
 * key travels in a header rather than the URL. Keeps the latest snapshot and the chart series
 * (history first, then one point per snapshot); reconnects after an error.
 */
import { useEffect, useState } from 'preact/hooks'
import { authHeaders, checkResponse } from './api'
import type { LiveActivity, LiveHistory, LiveSample, LiveSnapshot } from './types'

/** Ten minutes at one point per second, as the server keeps. */
const MAX_POINTS = 600
const RECONNECT_MS = 2000

export interface FnSeries {
  instances: number[]
  busy: number[]
  backlog: number[]
  eventsPerSec: number[]
}

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'unauthorized'

class LiveStore {
  status: LiveStatus = 'connecting'
  snapshot: LiveSnapshot | undefined
  /** Epoch seconds of each point. */
  times: number[] = []
  readonly series = new Map<string, FnSeries>()
  private readonly listeners = new Set<() => void>()
  private readonly activityListeners = new Set<(a: LiveActivity) => void>()
  private abort: AbortController | undefined

  subscribe(l: () => void): () => void {
    this.listeners.add(l)
    return () => this.listeners.delete(l)
  }

  onActivity(l: (a: LiveActivity) => void): () => void {
    this.activityListeners.add(l)
    return () => this.activityListeners.delete(l)
  }

  /** (Re)connects, e.g. after the admin key changed. */
  restart(): void {
    this.abort?.abort()
    const ac = new AbortController()
    this.abort = ac
    this.setStatus('connecting')
    void this.run(ac.signal)
  }

  stop(): void {
    this.abort?.abort()
  }

  private notify(): void {
    for (const l of this.listeners) l()
  }

  private setStatus(s: LiveStatus): void {
    if (this.status === s) return
    this.status = s
    this.notify()
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const res = await fetch('/admin/events', { headers: { accept: 'text/event-stream', ...authHeaders() }, cache: 'no-store', signal })
        if (res.status === 401) {
          this.setStatus('unauthorized')
          await checkResponse(res).catch(() => undefined)
          return // restart() runs again once a key is entered
        }
        await checkResponse(res)
        if (!res.body) throw new Error('no response body')
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
        let buf = ''
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buf += value
          let end: number
          while ((end = buf.indexOf('\n\n')) >= 0) {
            this.frame(buf.slice(0, end))
            buf = buf.slice(end + 2)
          }
        }
      } catch {
        // network error or abort: fall through to reconnect (or stop when aborted)
      }
      if (signal.aborted) return
      this.setStatus('reconnecting')
      await new Promise((r) => setTimeout(r, RECONNECT_MS))
    }
  }

  private frame(text: string): void {
    let event = 'message'
    const data: string[] = []
    for (const line of text.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
    }
    if (data.length === 0) return
    const payload: unknown = JSON.parse(data.join('\n'))
    if (event === 'history') this.history(payload as LiveHistory)
    else if (event === 'snapshot') this.append(payload as LiveSnapshot)
    else if (event === 'activity') for (const l of this.activityListeners) l(payload as LiveActivity)
  }

  private history(h: LiveHistory): void {
    this.times = h.points.map((p) => p.t / 1000)
    this.series.clear()
    h.names.forEach((name, i) => {
      const s: FnSeries = { instances: [], busy: [], backlog: [], eventsPerSec: [] }
      for (const p of h.points) push(s, p.f[i] ?? [0, 0, 0, 0])
      this.series.set(name, s)
    })
    this.notify()
  }

  private append(snap: LiveSnapshot): void {
    this.snapshot = snap
    this.status = 'live'
    const t = snap.t / 1000
    const last = this.times[this.times.length - 1]
    // The snapshot sent on connect is the history's last point.
    if (last === undefined || t > last) {
      this.times.push(t)
      for (const f of snap.functions) {
        let s = this.series.get(f.name)
        if (!s) {
          const zeros = () => this.times.slice(1).map(() => 0)
          s = { instances: zeros(), busy: zeros(), backlog: zeros(), eventsPerSec: zeros() }
          this.series.set(f.name, s)
        }
        push(s, [f.instances, f.busy, f.backlog, f.eventsPerSec])
      }
      if (this.times.length > MAX_POINTS) {
        const drop = this.times.length - MAX_POINTS
        this.times.splice(0, drop)
        for (const s of this.series.values()) for (const a of Object.values(s) as number[][]) a.splice(0, drop)
      }
    }
    this.notify()
  }
}

function push(s: FnSeries, [instances, busy, backlog, eventsPerSec]: LiveSample): void {
  s.instances.push(instances)
  s.busy.push(busy)
  s.backlog.push(backlog)
  s.eventsPerSec.push(eventsPerSec)
}

export const live = new LiveStore()

/** Re-renders the calling component on every change of the live store. */
export function useLive(): LiveStore {
  const [, setVersion] = useState(0)
  useEffect(() => live.subscribe(() => setVersion((v) => v + 1)), [])
  return live
}

/** Calls `fn` for every activity notification while the component is mounted. */
export function useActivity(fn: (a: LiveActivity) => void, deps: unknown[]): void {
  useEffect(() => live.onActivity(fn), deps)
}
