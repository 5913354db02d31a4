import type { Handler, MqttEvent } from 'sluice/function'

/**
 * Station telemetry (MQTT trigger, batches): low-battery alerts go to the `alerts` output, and
 * each batch's per-station aggregates to the `aggregates` output. Events of one station topic
 * arrive in order; different stations run in parallel.
 */
interface Reading {
  station: string
  scooter: string
  seq: number
  battery: number
  lat: number
  lon: number
  speed: number
  faults: string[]
  ts: string
}

const LOW_BATTERY = 15

/** Readings are JSON; anything else a device publishes arrives as a string and is skipped. */
const telemetry: Handler<MqttEvent<Reading | string>, { readings: number; stations: number }, 'alerts' | 'aggregates'> = async (events, ctx) => {
  const byStation = new Map<string, { readings: number; moving: number; speedSum: number; lowBattery: number; faults: number }>()
  let skipped = 0
  for (const e of events) {
    const r = e.body
    if (typeof r !== 'object' || r === null || typeof r.battery !== 'number') {
      skipped++
      continue
    }
    const agg = byStation.get(r.station) ?? { readings: 0, moving: 0, speedSum: 0, lowBattery: 0, faults: 0 }
    agg.readings++
    if (r.speed > 0) {
      agg.moving++
      agg.speedSum += r.speed
    }
    if (r.battery < LOW_BATTERY) {
      agg.lowBattery++
      ctx.output('alerts', { kind: 'low-battery', scooter: r.scooter, station: r.station, battery: r.battery, at: r.ts })
    }
    if (r.faults.length > 0) {
      agg.faults++
      ctx.output('alerts', { kind: 'fault', scooter: r.scooter, station: r.station, faults: r.faults, at: r.ts })
    }
    byStation.set(r.station, agg)
  }
  for (const [station, a] of byStation) {
    ctx.output('aggregates', {
      station,
      readings: a.readings,
      moving: a.moving,
      avgSpeed: a.moving ? Math.round((a.speedSum / a.moving) * 10) / 10 : 0,
      lowBattery: a.lowBattery,
      faults: a.faults,
    })
  }
  if (skipped > 0) ctx.log.warn(`${skipped} readings were not telemetry JSON and were skipped`)
  return { readings: events.length - skipped, stations: byStation.size }
}

export default telemetry
