/** The demo's station registry: 200 stations of a scooter-rental company in Amsterdam. */
export interface Station {
  id: string
  name: string
  lat: number
  lon: number
  docks: number
}

const DISTRICTS = ['Centrum', 'Oost', 'West', 'Noord', 'Zuid', 'Nieuw-West', 'Zuidoost', 'Westpoort']

/** Deterministic: the same ids and positions on every run, so telemetry and lookups agree. */
export function station(n: number): Station {
  const district = DISTRICTS[n % DISTRICTS.length] as string
  return {
    id: `st-${String(n).padStart(3, '0')}`,
    name: `${district} ${Math.floor(n / DISTRICTS.length) + 1}`,
    lat: 52.3676 + ((n * 37) % 100) / 1000 - 0.05,
    lon: 4.9041 + ((n * 53) % 100) / 1000 - 0.05,
    docks: 8 + (n % 5) * 4,
  }
}

export const STATION_COUNT = 200

export function findStation(id: string): Station | undefined {
  const m = /^st-(\d{3})$/.exec(id)
  if (!m) return undefined
  const n = Number(m[1])
  return n < STATION_COUNT ? station(n) : undefined
}
