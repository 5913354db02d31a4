import { connect, type MqttClient } from 'mqtt'
import { SluiceError } from '../errors.js'

export interface SimulateOptions {
  url: string
  stations: number
  /** Messages per second, across all stations. */
  rate: number
  /** Stop after this many seconds (0: until interrupted). */
  duration: number
  /** Stop after this many messages (0: no limit). */
  count: number
  /** Chance per second that an online station drops out (it returns after 2-10 s). */
  dropout: number
  qos: 0 | 1
  topicPrefix: string
  /** Where the progress line goes. */
  progress: NodeJS.WritableStream
}

interface Scooter {
  id: string
  battery: number
  lat: number
  lon: number
  speed: number
}

interface Station {
  id: string
  scooters: Scooter[]
  offlineUntil: number
  seq: number
}

const FAULTS = ['brake_wear', 'tyre_pressure', 'motor_temp', 'lock_jammed', 'gps_drift']

/** Deterministic pseudo-random numbers (mulberry32), so runs are repeatable. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function fleet(count: number, random: () => number): Station[] {
  return Array.from({ length: count }, (_, n) => ({
    id: `st-${String(n).padStart(3, '0')}`,
    scooters: Array.from({ length: 8 + Math.floor(random() * 12) }, (_, k) => ({
      id: `sc-${String(n).padStart(3, '0')}-${String(k).padStart(2, '0')}`,
      battery: 20 + Math.floor(random() * 80),
      lat: 52.3676 + (random() - 0.5) / 10,
      lon: 4.9041 + (random() - 0.5) / 10,
      speed: 0,
    })),
    offlineUntil: 0,
    seq: 0,
  }))
}

/** One telemetry reading: the scooter moved or charged a little since the last one. */
function reading(st: Station, random: () => number): Record<string, unknown> {
  const sc = st.scooters[Math.floor(random() * st.scooters.length)] as Scooter
  const riding = random() < 0.6
  sc.speed = riding ? Math.round((8 + random() * 17) * 10) / 10 : 0
  sc.battery = Math.max(0, Math.min(100, sc.battery + (riding ? -random() * 2 : random() * 3)))
  sc.lat += riding ? (random() - 0.5) / 2000 : 0
  sc.lon += riding ? (random() - 0.5) / 2000 : 0
  const faults = random() < 0.01 ? [FAULTS[Math.floor(random() * FAULTS.length)]] : []
  return {
    station: st.id,
    scooter: sc.id,
    seq: ++st.seq,
    battery: Math.round(sc.battery * 10) / 10,
    lat: Math.round(sc.lat * 1e6) / 1e6,
    lon: Math.round(sc.lon * 1e6) / 1e6,
    speed: sc.speed,
    faults,
    ts: new Date().toISOString(),
  }
}

function publish(client: MqttClient, topic: string, payload: string, qos: 0 | 1): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos }, (err) => (err ? reject(err) : resolve())))
}

/**
 * `sluice simulate`: publishes synthetic scooter telemetry over MQTT to
 * `<prefix>/<station>/telemetry`, with a progress line. Stations drop out and come back (and
 * then send what they have in a burst, as real stations do after a network gap).
 * Resolves with the number of messages the broker acknowledged.
 */
export async function simulate(o: SimulateOptions): Promise<{ sent: number; acked: number; failed: number }> {
  const random = rng(42)
  const stations = fleet(o.stations, random)
  const client = connect(o.url, { clientId: `sluice-simulate-${process.pid}`, reconnectPeriod: 1000, connectTimeout: 5000 })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', (e) =>
      reject(new SluiceError('SLUICE_ERR_CLI_REMOTE', `cannot connect to ${o.url}: ${e.message} (is the gateway or broker running?)`)),
    )
  })
  let sent = 0
  let acked = 0
  let failed = 0
  let stop = false
  const onSignal = () => {
    stop = true
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const started = Date.now()
  const backlog = new Map<Station, number>()
  const pending = new Set<Promise<void>>()
  const TICK_MS = 50
  let carry = 0
  let lastProgress = 0
  while (!stop) {
    const now = Date.now()
    if ((o.duration > 0 && now - started >= o.duration * 1000) || (o.count > 0 && sent >= o.count)) break
    // Dropouts: an offline station keeps measuring and sends its backlog when it returns.
    for (const st of stations) {
      if (st.offlineUntil === 0 && random() < o.dropout * (TICK_MS / 1000)) st.offlineUntil = now + 2000 + random() * 8000
      else if (st.offlineUntil !== 0 && now >= st.offlineUntil) st.offlineUntil = 0
    }
    carry += (o.rate * TICK_MS) / 1000
    let n = Math.floor(carry)
    carry -= n
    if (o.count > 0) n = Math.min(n, o.count - sent)
    for (let i = 0; i < n; i++) {
      const st = stations[Math.floor(random() * stations.length)] as Station
      if (st.offlineUntil !== 0) {
        backlog.set(st, (backlog.get(st) ?? 0) + 1)
        continue
      }
      const burst = 1 + (backlog.get(st) ?? 0)
      backlog.delete(st)
      for (let b = 0; b < burst && (o.count === 0 || sent < o.count); b++) {
        const p = publish(client, `${o.topicPrefix}/${st.id}/telemetry`, JSON.stringify(reading(st, random)), o.qos).then(
          () => {
            acked++
          },
          () => {
            failed++
          },
        )
        pending.add(p)
        void p.finally(() => pending.delete(p))
        sent++
      }
    }
    if (now - lastProgress >= 1000) {
      lastProgress = now
      const online = stations.filter((s) => s.offlineUntil === 0).length
      const secs = (now - started) / 1000
      const tty = (o.progress as { isTTY?: boolean }).isTTY === true
      o.progress.write(
        `${tty ? '\r' : ''}simulate: ${sent} sent, ${acked} acked, ${failed} failed, ${Math.round(acked / Math.max(secs, 0.001))}/s, ${online}/${stations.length} stations online${tty ? '   ' : '\n'}`,
      )
    }
    await new Promise((r) => setTimeout(r, TICK_MS))
  }
  await Promise.all(pending)
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  await client.endAsync()
  o.progress.write(
    `${(o.progress as { isTTY?: boolean }).isTTY === true ? '\r' : ''}simulate: done: ${sent} sent, ${acked} acked, ${failed} failed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  )
  return { sent, acked, failed }
}
