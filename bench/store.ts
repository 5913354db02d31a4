/**
 * Store latency: a dead-letter write and a timer-tick lease (acquire + finish), PostgreSQL (the
 * local server, a throwaway schema) against SQLite (a file with synchronous=FULL) in the same run.
 * Sequential calls, one at a time, as the router and the timer make them. Prints p50/p99 in ms and
 * the PostgreSQL/SQLite ratio. Run: npm run bench:store (PG url: SLUICE_BENCH_PG_URL).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { PostgresStore } from '../src/store/postgres.js'
import { SqliteStore } from '../src/store/sqlite.js'
import type { Store } from '../src/store/store.js'
import { fmt, summary } from './common.js'

const PG_URL = process.env.SLUICE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const N = Number(process.env.SLUICE_BENCH_N ?? 2000)
const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet }

async function time(n: number, op: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < Math.min(100, n); i++) await op(-1 - i) // warm-up
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await op(i)
    out.push(performance.now() - t)
  }
  return out
}

async function measure(store: Store, tag: string): Promise<{ dead: number[]; lease: number[] }> {
  const event = {
    id: 'e',
    source: 'amqp://q/telemetry',
    time: new Date().toISOString(),
    body: { station: 17, battery: 12, readings: Array.from({ length: 20 }, (_, i) => i) },
    meta: { queue: 'telemetry', deliveryTag: 1 },
  }
  const dead = await time(N, (i) =>
    store.putDeadLetter({
      function: 'telemetry',
      event: { ...event, id: `${tag}-${i}` },
      error: { code: 'SLUICE_ERR_FUNCTION_THREW', message: 'boom', retriable: true },
      attempts: 3,
      firstAttemptAt: new Date().toISOString(),
      failedAt: new Date().toISOString(),
    }),
  )
  const lease = await time(N, async (i) => {
    const r = await store.acquireLease(`timer:bench:tick:${tag}-${i}`, 'bench', 10_000)
    if (r.acquired) await store.finishLease(r.lease, 3_600_000)
  })
  return { dead, lease }
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-store-'))
const schema = `sluice_bench_${process.pid}`
const sqlite = new SqliteStore(join(dir, 'state.db'))
const postgres = await PostgresStore.open({ url: PG_URL, schema, log: quiet, poolMax: 4 })
try {
  const s = await measure(sqlite, 's')
  const p = await measure(postgres, 'p')
  console.log(`store latency, ${N} sequential calls each (ms)`)
  console.log('operation                     sqlite p50/p99     postgres p50/p99   ratio p50')
  for (const [name, a, b] of [
    ['dead-letter write', s.dead, p.dead],
    ['timer lease acquire+finish', s.lease, p.lease],
  ] as const) {
    const x = summary([...a])
    const y = summary([...b])
    console.log(
      `${name.padEnd(30)}${`${fmt(x.p50, 3)} / ${fmt(x.p99, 3)}`.padEnd(19)}${`${fmt(y.p50, 3)} / ${fmt(y.p99, 3)}`.padEnd(19)}${fmt(y.p50 / x.p50)}x`,
    )
  }
} finally {
  await sqlite.close()
  await postgres.close()
  rmSync(dir, { recursive: true, force: true })
  const c = new pg.Client({ connectionString: PG_URL })
  await c.connect()
  await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await c.end()
}
