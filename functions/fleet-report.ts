import type { Handler, TimerEvent } from 'sluice/function'
import { STATION_COUNT, station } from './lib/stations.js'

/**
 * Periodic fleet report (timer trigger). A tick missed while the gateway was down arrives once
 * with isPastDue: true when catchUp is latest.
 */
const fleetReport: Handler<TimerEvent> = async (events, ctx) => {
  const tick = events[0]
  if (tick?.body.isPastDue) ctx.log.warn('catching up a report missed while the gateway was down', tick.body.scheduledAt)
  let docks = 0
  const byDistrict: Record<string, number> = {}
  for (let n = 0; n < STATION_COUNT; n++) {
    const s = station(n)
    docks += s.docks
    const district = s.name.replace(/ \d+$/, '')
    byDistrict[district] = (byDistrict[district] ?? 0) + 1
  }
  const report = { scheduledAt: tick?.body.scheduledAt, stations: STATION_COUNT, docks, byDistrict }
  ctx.log.info('fleet report', report)
  return report
}

export default fleetReport
