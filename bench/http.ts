/**
 * HTTP: requests/s and latency of an /api function returning small JSON, against a bare fastify
 * route returning the same JSON, both served from this process and loaded by autocannon from a
 * child process (so the load generator does not share the servers' thread). Rounds alternate.
 *
 *   node --no-node-snapshot --import tsx bench/http.ts [seconds] [connections]
 */
import { fork } from 'node:child_process'
import { Agent, get } from 'node:http'
import Fastify from 'fastify'
import { benchGateway, fmt } from './common.js'

const SECONDS = Number(process.argv[2] ?? 5)
const CONNECTIONS = Number(process.argv[3] ?? 10)
const BODY = { station: 'st-007', docks: 16, free: 5, ok: true }

interface Result {
  rps: number
  p50: number
  p99: number
  errors: number
}

/** Runs autocannon in a child process against `url`. */
function load(url: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./http-load.ts', import.meta.url), [url, String(SECONDS), String(CONNECTIONS)], { execArgv: ['--import', 'tsx'] })
    child.once('message', (m) => resolve(m as Result))
    child.once('error', reject)
  })
}

const bare = Fastify({ logger: false })
bare.get('/bare/:id', async () => BODY)
await bare.listen({ port: 0, host: '127.0.0.1' })
const bareUrl = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/bare/st-007`

const gw = await benchGateway(
  `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1 }\nstore: { path: ':memory:' }\nfunctions:\n  status:\n    code: fn.js\n    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }\n    scale: { min: ${CONNECTIONS}, max: ${CONNECTIONS} }\n`,
  { 'fn.js': `export default async () => (${JSON.stringify(BODY)})` },
)
const gwUrl = `${gw.url}/api/stations/st-007`
const check = await (await fetch(gwUrl)).json()
if (JSON.stringify(check) !== JSON.stringify(BODY)) throw new Error(`gateway answered ${JSON.stringify(check)}`)

/** Latency of sequential requests over one keep-alive connection (sub-millisecond resolution). */
async function sequential(url: string, n: number): Promise<{ p50: number; p99: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const once = () =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now()
      get(url, { agent }, (res) => {
        res.resume()
        res.on('end', () => resolve(performance.now() - t0))
      }).on('error', reject)
    })
  for (let i = 0; i < 200; i++) await once()
  const xs: number[] = []
  for (let i = 0; i < n; i++) xs.push(await once())
  agent.destroy()
  xs.sort((a, b) => a - b)
  return { p50: xs[Math.floor(n / 2)] as number, p99: xs[Math.floor(n * 0.99)] as number }
}

const seqBare = await sequential(bareUrl, 3000)
const seqGw = await sequential(gwUrl, 3000)

const rounds: Array<{ bare: Result; gw: Result }> = []
for (let i = 0; i < 2; i++) {
  process.stderr.write(`round ${i + 1}/2\n`)
  const b = await load(bareUrl)
  const g = await load(gwUrl)
  rounds.push({ bare: b, gw: g })
}
await gw.stop()
await bare.close()

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const b = { rps: avg(rounds.map((r) => r.bare.rps)), p50: avg(rounds.map((r) => r.bare.p50)), p99: avg(rounds.map((r) => r.bare.p99)) }
const g = { rps: avg(rounds.map((r) => r.gw.rps)), p50: avg(rounds.map((r) => r.gw.p50)), p99: avg(rounds.map((r) => r.gw.p99)) }
console.log(`\nHTTP, ${CONNECTIONS} connections, ${SECONDS} s x 2 rounds each (small JSON)`)
console.log('server                     req/s     p50 ms   p99 ms')
console.log(`bare fastify route     ${fmt(b.rps, 0).padStart(9)}   ${fmt(b.p50).padStart(6)}   ${fmt(b.p99).padStart(6)}`)
console.log(`sluice /api function   ${fmt(g.rps, 0).padStart(9)}   ${fmt(g.p50).padStart(6)}   ${fmt(g.p99).padStart(6)}`)
console.log(`ratio: ${fmt(g.rps / b.rps)}x requests/s; errors: ${rounds.reduce((n, r) => n + r.gw.errors + r.bare.errors, 0)}`)
console.log(`\nsequential, one keep-alive connection, 3000 requests (ms)`)
console.log(`bare fastify route     p50 ${fmt(seqBare.p50, 3)}   p99 ${fmt(seqBare.p99, 3)}`)
console.log(`sluice /api function   p50 ${fmt(seqGw.p50, 3)}   p99 ${fmt(seqGw.p99, 3)}`)
console.log(`added p50 latency: ${fmt(seqGw.p50 - seqBare.p50, 3)} ms`)
