/**
 * One AMQP queue drained by 1, 2 and 3 gateway instances (`sluice start` processes sharing one
 * PostgreSQL store, competing consumers on the queue), against a bare amqplib consumer in the same
 * run. Each round pre-fills a fresh queue with small JSON messages, then drains it with each
 * configuration in turn (bare, 1, 2, 3).
 *
 * The instances start on an empty queue; once all are up, each config is pointed at the filled
 * queue and reloaded (POST /admin/reload, all at once), so they start draining together. Rate and
 * CPU are measured over a window: from the moment the last instance logged 'amqp consumer started'
 * for the filled queue to the moment the instances' counters (GET /admin/functions/telemetry,
 * eventsDone, polled every 50 ms) add up to every message; the few done before the window are
 * left out of it. CPU per message is the CPU time of the gateway processes and their worker hosts
 * (/proc) in that window over the messages done in it. Lost or doubled messages: the counters must add up to exactly the pre-filled count,
 * none dead, and the queue must be empty afterwards.
 *
 *   node --no-node-snapshot --import tsx bench/cluster-amqp.ts [messages] [rounds]
 *   SLUICE_BENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672)
 *   SLUICE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres; a throwaway schema)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { connect, type ChannelModel, type Message } from 'amqplib'
import pg from 'pg'
import { fmt, median, TELEMETRY_FN } from './common.js'

const TOTAL = Number(process.argv[2] ?? 60_000)
const ROUNDS = Number(process.argv[3] ?? 2)
const AMQP_URL = process.env.SLUICE_BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const PG_URL = process.env.SLUICE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const PREFETCH = 256
const SCHEMA = `sluice_bench_cluster_${process.pid}`
const BIN = resolve('src/cli/bin.ts')
// Resolved from here: the instances run in a temp folder without node_modules.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href

interface Window {
  /** Messages done in the window, and its length (ms). */
  n: number
  ms: number
  /** CPU time (us) in the window: the consumer's process(es) and worker hosts. */
  cpuUs: number
  /** Function runs over the whole drain (gateways only): events per run shows how batches fill. */
  invocations?: number
}

function body(k: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      station: `st-${String(k % 200).padStart(3, '0')}`,
      seq: k,
      battery: k % 100,
      speed: (k % 25) + 0.5,
      lat: 52.3676,
      lon: 4.9041,
      status: 'parked',
    }),
  )
}

async function prefill(model: ChannelModel, queue: string): Promise<void> {
  const ch = await model.createConfirmChannel()
  await ch.assertQueue(queue, { durable: true })
  for (let i = 0; i < TOTAL; i++) {
    if (!ch.sendToQueue(queue, body(i), { persistent: true, contentType: 'application/json' })) await new Promise((r) => ch.once('drain', r))
    if (i % 2000 === 1999) await ch.waitForConfirms()
  }
  await ch.waitForConfirms()
  await ch.close()
}

/** utime + stime (us) of `pid` and all its descendants, from /proc. */
function treeCpuUs(root: number): number {
  const parent = new Map<number, number>()
  const cpu = new Map<number, number>()
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const f = readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
      parent.set(Number(e), Number(f[1]))
      cpu.set(Number(e), (Number(f[11]) + Number(f[12])) * 10_000)
    } catch {
      // gone meanwhile
    }
  }
  let sum = 0
  for (const [pid, us] of cpu) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        sum += us
        break
      }
    }
  }
  return sum
}

async function bare(model: ChannelModel, queue: string): Promise<Window> {
  const ch = await model.createChannel()
  await ch.prefetch(PREFETCH)
  let n = 0
  let last: Message | undefined
  let queued = false
  let t0 = 0
  let cpu0 = process.cpuUsage()
  const t1 = await new Promise<number>((done) => {
    const flush = () => {
      queued = false
      if (last) ch.ack(last, true)
      if (n === TOTAL) done(performance.now())
    }
    void ch
      .consume(queue, (m) => {
        if (!m) return
        JSON.parse(m.content.toString('utf8'))
        n++
        last = m
        if (!queued) {
          queued = true
          setImmediate(flush)
        }
      })
      .then(() => {
        t0 = performance.now()
        cpu0 = process.cpuUsage()
      })
  })
  const cpu = process.cpuUsage(cpu0)
  await ch.close()
  return { n: TOTAL, ms: t1 - t0, cpuUs: cpu.user + cpu.system }
}

class Instance {
  readonly child: ChildProcess
  readonly config: string
  url = ''
  /** 'amqp consumer started' lines so far (the first on the idle queue, the next on the filled one). */
  consuming = 0
  private buf = ''

  constructor(dir: string, name: string, queue: string) {
    const config = (this.config = join(dir, `gateway-${name}.yaml`))
    writeFileSync(
      config,
      `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { kind: postgres, url: "${PG_URL}", schema: ${SCHEMA} }
instance: { id: bench-${name} }
log: { level: info }
connections:
  queue: { kind: amqp, url: "${AMQP_URL}" }
functions:
  telemetry:
    code: fn.js
    trigger: { amqp: { connection: queue, queue: ${queue}, prefetch: ${PREFETCH} } }
    batch: { maxSize: 100, maxWaitMs: 5 }
    scale: { min: 1, max: 4 }
`,
    )
    this.child = spawn(process.execPath, ['--import', TSX, BIN, 'start', '--config', config], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '' },
    })
    this.child.stdout?.on('data', (d: Buffer) => {
      const lines = (this.buf + d.toString()).split('\n')
      this.buf = lines.pop() ?? ''
      for (const l of lines) {
        if (l.includes('amqp consumer started')) this.consuming++
        if (l.includes('"gateway up"')) this.url = String((JSON.parse(l) as { url: string }).url)
      }
    })
  }

  /** Points the trigger at `queue` and reloads; resolves when the gateway answered. */
  async retarget(from: string, to: string): Promise<void> {
    writeFileSync(this.config, readFileSync(this.config, 'utf8').replace(`queue: ${from},`, `queue: ${to},`))
    const res = await fetch(`${this.url}/admin/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    if (!res.ok) throw new Error(`POST /admin/reload answered ${res.status}: ${await res.text()}`)
  }

  async counts(): Promise<Counts> {
    const res = await fetch(`${this.url}/admin/functions/telemetry`)
    return ((await res.json()) as { counts: Counts }).counts
  }

  stop(): Promise<unknown> {
    if (this.child.exitCode !== null) return Promise.resolve()
    const exited = new Promise((r) => this.child.once('exit', r))
    this.child.kill('SIGTERM')
    return exited
  }
}

interface Counts {
  eventsDone: number
  eventsDead: number
  invocations: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function cluster(dir: string, queue: string, n: number): Promise<Window & { before: number }> {
  const idle = `${queue}-idle`
  const ch = await model.createChannel()
  await ch.assertQueue(idle, { durable: false, autoDelete: true })
  const instances = Array.from({ length: n }, (_, i) => new Instance(dir, String.fromCharCode(65 + i), idle))
  const started = async (k: number) => {
    while (!instances.every((i) => i.consuming >= k && i.url)) {
      if (instances.some((i) => i.child.exitCode !== null)) throw new Error('a gateway exited')
      await sleep(5)
    }
  }
  try {
    await started(1)
    await Promise.all(instances.map((i) => i.retarget(idle, queue)))
    await started(2)
    const t0 = performance.now()
    const cpu0 = instances.reduce((a, i) => a + treeCpuUs(i.child.pid as number), 0)
    const done = async () =>
      (await Promise.all(instances.map((i) => i.counts()))).reduce(
        (a, c) => ({ eventsDone: a.eventsDone + c.eventsDone, eventsDead: a.eventsDead + c.eventsDead, invocations: a.invocations + c.invocations }),
        { eventsDone: 0, eventsDead: 0, invocations: 0 },
      )
    const before = (await done()).eventsDone
    let c = await done()
    while (c.eventsDone < TOTAL) {
      await sleep(50)
      c = await done()
    }
    const t1 = performance.now()
    const cpu = instances.reduce((a, i) => a + treeCpuUs(i.child.pid as number), 0) - cpu0
    // Exactly once: acks of the last batches may still be on their way, but nothing more runs.
    await sleep(500)
    c = await done()
    if (c.eventsDone !== TOTAL || c.eventsDead !== 0) throw new Error(`${n} instances: ${c.eventsDone} done, ${c.eventsDead} dead of ${TOTAL}`)
    return { n: TOTAL - before, ms: t1 - t0, cpuUs: cpu, before, invocations: c.invocations }
  } finally {
    await Promise.all(instances.map((i) => i.stop()))
    await ch.deleteQueue(idle).catch(() => undefined)
    await ch.close().catch(() => undefined)
  }
}

async function emptied(model: ChannelModel, queue: string): Promise<void> {
  const ch = await model.createChannel()
  const { messageCount } = await ch.checkQueue(queue)
  await ch.deleteQueue(queue)
  await ch.close()
  if (messageCount !== 0) throw new Error(`${queue} still holds ${messageCount} messages`)
}

const CONFIGS = ['bare', 1, 2, 3] as const
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-cluster-'))
writeFileSync(join(dir, 'fn.js'), TELEMETRY_FN)
const model = await connect(AMQP_URL)
const results = new Map<(typeof CONFIGS)[number], Window[]>(CONFIGS.map((c) => [c, []]))
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const config of CONFIGS) {
      const queue = `sluice-bench-cluster-${process.pid}-${round}-${config}`
      await prefill(model, queue)
      const w = config === 'bare' ? await bare(model, queue) : await cluster(dir, queue, config)
      await emptied(model, queue)
      results.get(config)?.push(w)
      const head =
        'before' in w ? `  (${w.before} done before the last instance consumed; ${fmt(TOTAL / (w.invocations ?? 1), 1)} events per function run)` : ''
      process.stderr.write(
        `round ${round} ${String(config).padEnd(4)} ${fmt(w.n / (w.ms / 1000), 0).padStart(7)} msg/s  ${fmt(w.cpuUs / w.n, 1)} us CPU/msg  ${w.n} in window${head}\n`,
      )
    }
  }
} finally {
  await model.close()
  rmSync(dir, { recursive: true, force: true })
  const c = new pg.Client({ connectionString: PG_URL })
  await c.connect()
  await c.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await c.end()
}

const rate = (c: (typeof CONFIGS)[number]) => median((results.get(c) ?? []).map((w) => w.n / (w.ms / 1000)))
const cpu = (c: (typeof CONFIGS)[number]) => median((results.get(c) ?? []).map((w) => w.cpuUs / w.n))
console.log(`\none AMQP queue, ${TOTAL} messages per drain, prefetch ${PREFETCH}, ${ROUNDS} rounds (medians)`)
const perRun = (c: (typeof CONFIGS)[number]) =>
  c === 'bare' ? '' : fmt(median((results.get(c) ?? []).map((w) => TOTAL / (w.invocations ?? 1))), 1).padStart(8)
console.log('consumer          msg/s   vs bare  vs 1 inst   CPU us/msg  vs bare  vs 1 inst  events/run')
for (const c of CONFIGS) {
  const name = c === 'bare' ? 'bare amqplib' : `${c} instance${c > 1 ? 's' : ''}`
  console.log(
    `${name.padEnd(16)}${fmt(rate(c), 0).padStart(7)}  ${fmt(rate(c) / rate('bare')).padStart(6)}x  ${fmt(rate(c) / rate(1)).padStart(8)}x  ${fmt(cpu(c), 1).padStart(10)}  ${fmt(cpu(c) / cpu('bare')).padStart(6)}x  ${fmt(cpu(c) / cpu(1)).padStart(8)}x  ${perRun(c)}`,
  )
}
