import { findStation } from './lib/stations.js'

interface HttpEvent {
  id: string
  body: unknown
  meta: { method: string; params: { id?: string }; query: Record<string, string> }
}

interface Ctx {
  log: { info(...args: unknown[]): void }
}

/**
 * GET /api/stations/{id}: a station's details. HTTP functions receive one event per request and
 * return { status, headers, body }.
 */
export default async function stationStatus(events: HttpEvent[], ctx: Ctx) {
  const req = events[0]
  const id = req?.meta.params.id ?? ''
  const station = findStation(id)
  if (!station) {
    return { status: 404, body: { error: `no station ${id}`, hint: 'station ids look like st-007' } }
  }
  ctx.log.info('station looked up', id)
  return {
    status: 200,
    headers: { 'cache-control': 'max-age=5' },
    body: { ...station, checkedAt: new Date().toISOString() },
  }
}
