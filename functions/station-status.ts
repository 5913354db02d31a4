import type { Handler, HttpEvent, HttpResponse } from 'sluice/function'
import { findStation } from './lib/stations.js'

/**
 * GET /api/stations/{id}: a station's details. HTTP functions receive one event per request and
 * return { status, headers, body }.
 */
const stationStatus: Handler<HttpEvent<unknown, 'id'>, HttpResponse> = async (events, ctx) => {
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

export default stationStatus
