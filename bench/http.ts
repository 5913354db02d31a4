/**
 * HTTP: requests/s, latency and CPU per request of an /api function returning small JSON, served
 * by its worker host (http.direct) and, as context, through the gateway process (http.direct:
 * false), against a bare fastify route returning the same JSON (all served from this process) and
 * Node-RED (http in -> function -> http response, its own process; skipped when node-red is not
 * installed). autocannon loads one server at a time from a child process, at each connection
 * count; rounds alternate. CPU per request: this process for fastify; this process plus the
 * worker hosts for sluice; the Node-RED process for Node-RED (from /proc).
 *
 *   node --no-node-snapshot --import tsx bench/http.ts [seconds=5] [connections=10,100] [rounds=2]
 *   SLUICE_BENCH_NODE_RED=0 leaves Node-RED out; SLUICE_BENCH_HTTP_VIA_GATEWAY=0 the sluice with
 *   http.direct: false; SLUICE_BENCH_HTTP_HOSTS=<n> gives each sluice n worker hosts (default 1).
 *   SLUICE_BENCH_PROFILE=<dir> writes a CPU profile of this process (the gateway; not the worker
 *   hosts: SLUICE_HOST_CPU_PROF=<dir> profiles those) for each sluice load round.
 */
import { fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { Agent, get } from 'node:http'
import Fastify from 'fastify'
import { benchGateway, fmt } from './common.js'
import { ceilingRate, cpuOf, selfCpu } from './cpu.js'
import { startNodeRed } from './node-red.js'
import { recordSummary } from './summary.js'

const SECONDS = Number(process.argv[2] ?? 5)
const CONNECTIONS = (process.argv[3] ?? '10,100').split(',').map(Number)
const ROUNDS = Number(process.argv[4] ?? 2)
/** Worker hosts of each sluice gateway (SLUICE_BENCH_HTTP_HOSTS, default 1). */
const HOSTS = Number(process.env.SLUICE_BENCH_HTTP_HOSTS ?? 1)
const BODY = { station: 'st-007', docks: 16, free: 5, ok: true }

interface Load {
  rps: number
  total: number
  p50: number
  p99: number
  errors: number
  /** The whole machine's CPU (us) while the load ran, autocannon included (cpu.ts machineCpu). */
  machine: number
}

/** Runs autocannon in a child process against `url`. */
function load(url: string, connections: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./http-load.ts', import.meta.url), [url, String(SECONDS), String(connections)], { execArgv: ['--import', 'tsx'] })
    child.once('message', (m) => resolve(m as Load))
    child.once('error', reject)
  })
}

const bare = Fastify({ logger: false })
bare.get('/bare/:id', async () => BODY)
await bare.listen({ port: 0, host: '127.0.0.1' })
const bareUrl = `http://127.0.0.1:${(bare.server.address() as { port: number }).port}/bare/st-007`

const maxConn = Math.max(...CONNECTIONS)
/** A gateway with the function; `direct`: worker hosts serve its connections (http.direct). */
async function sluice(direct: boolean) {
  const gw = await benchGateway(
    `http: { port: 0, host: 127.0.0.1, direct: ${direct} }\nworkers: { hosts: ${HOSTS} }\nstore: { path: ':memory:' }\nfunctions:\n  status:\n    code: fn.js\n    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }\n    scale: { min: ${Math.min(maxConn, 10)}, max: ${maxConn} }\n    maxBacklog: ${Math.max(1000, maxConn * 2)}\n`,
    { 'fn.js': `export default async () => (${JSON.stringify(BODY)})` },
  )
  const url = `${gw.url}/api/stations/st-007`
  // The first call also pins the function for direct serving (after it, new connections go to the host).
  const check = await (await fetch(url)).json()
  if (JSON.stringify(check) !== JSON.stringify(BODY)) throw new Error(`gateway answered ${JSON.stringify(check)}`)
  await new Promise((r) => setTimeout(r, 500))
  return { gw, url, hostPids: gw.hosts().map((h) => h.pid) }
}
const direct = await sluice(true)
// SLUICE_BENCH_HTTP_VIA_GATEWAY=0 leaves out the second sluice, every request through the gateway process.
const viaGateway = process.env.SLUICE_BENCH_HTTP_VIA_GATEWAY === '0' ? undefined : await sluice(false)
const nodeRed = process.env.SLUICE_BENCH_NODE_RED === '0' ? undefined : await startNodeRed(BODY)

type Server = 'bare' | 'sluice' | 'sluice-gw' | 'node-red'
const servers: Array<{ name: Server; label: string; url: string; cpu: () => number; hostPids: number[] }> = [
  { name: 'bare', label: 'bare fastify route', url: bareUrl, cpu: selfCpu, hostPids: [] },
  { name: 'sluice', label: 'sluice /api function (http.direct)', url: direct.url, cpu: () => selfCpu() + cpuOf(direct.hostPids), hostPids: direct.hostPids },
]
if (viaGateway) {
  servers.push({
    name: 'sluice-gw',
    label: 'sluice, http.direct: false (through the gateway)',
    url: viaGateway.url,
    cpu: () => selfCpu() + cpuOf(viaGateway.hostPids),
    hostPids: viaGateway.hostPids,
  })
}
if (nodeRed)
  servers.push({
    name: 'node-red',
    label: 'Node-RED 4 (http in -> function -> http response)',
    url: nodeRed.url,
    cpu: () => cpuOf([nodeRed.pid]),
    hostPids: [],
  })

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

// SLUICE_BENCH_PROFILE=<dir>: a CPU profile of this process during each sluice load round.
const profileDir = process.env.SLUICE_BENCH_PROFILE
const inspector = profileDir ? new Session() : undefined
if (inspector) {
  inspector.connect()
  await inspector.post('Profiler.enable')
}

const seq = new Map<Server, { p50: number; p99: number }>()
for (const s of servers) seq.set(s.name, await sequential(s.url, 3000))

interface Measured extends Load {
  cpuUs: number
  hostCpuUs: number
  /** The machine's CPU per request (us). */
  machineUs: number
}
const results = new Map<string, Measured[]>()
for (const conn of CONNECTIONS) {
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of servers) {
      const c0 = s.cpu()
      const h0 = cpuOf(s.hostPids)
      const profiled = inspector !== undefined && s.name === 'sluice'
      if (profiled) await inspector.post('Profiler.start')
      const l = await load(s.url, conn)
      const cpu = s.cpu() - c0
      const host = s.hostPids.length > 0 ? cpuOf(s.hostPids) - h0 : 0
      if (profiled && profileDir) {
        const { profile } = await inspector.post('Profiler.stop')
        writeFileSync(join(profileDir, `http-${conn}-${r + 1}.cpuprofile`), JSON.stringify(profile))
      }
      const n = Math.max(1, l.total)
      const m: Measured = { ...l, cpuUs: (cpu - host) / n, hostCpuUs: host / n, machineUs: l.machine / n }
      const key = `${s.name}@${conn}`
      results.set(key, [...(results.get(key) ?? []), m])
      process.stderr.write(
        `${conn} conn. round ${r + 1} ${s.name}: ${fmt(l.rps, 0)} req/s, CPU ${fmt(m.cpuUs, 1)} + ${fmt(m.hostCpuUs, 1)} us/req, machine ${fmt(m.machineUs, 1)}, errors ${l.errors}\n`,
      )
    }
  }
}
inspector?.disconnect()
await direct.gw.stop()
await viaGateway?.gw.stop()
await bare.close()
await nodeRed?.stop()

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
console.log(`\nHTTP, ${SECONDS} s x ${ROUNDS} alternating rounds per server and connection count (small JSON)\n`)
console.log(
  '| server | connections | req/s | ratio | p50 ms | p99 ms | CPU us/req (process + worker hosts) | machine CPU us/req (autocannon included) | cores busy | ceiling |',
)
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
for (const conn of CONNECTIONS) {
  const base = avg((results.get(`bare@${conn}`) ?? []).map((m) => m.rps))
  const row = (s: (typeof servers)[number]) => {
    const ms = results.get(`${s.name}@${conn}`) ?? []
    const rps = avg(ms.map((m) => m.rps))
    return {
      rps,
      ratio: rps / base,
      cpu: avg(ms.map((m) => m.cpuUs)),
      host: avg(ms.map((m) => m.hostCpuUs)),
      p50: avg(ms.map((m) => m.p50)),
      p99: avg(ms.map((m) => m.p99)),
      machine: avg(ms.map((m) => m.machineUs)),
    }
  }
  for (const s of servers) {
    const x = row(s)
    console.log(
      `| ${s.label} | ${conn} | ${fmt(x.rps, 0)} | ${fmt(x.ratio)}x | ${fmt(x.p50)} | ${fmt(x.p99)} | ${fmt(x.cpu, 1)}${s.hostPids.length > 0 ? ` + ${fmt(x.host, 1)}` : ''} | ${fmt(x.machine, 1)} | ${fmt((x.machine * x.rps) / 1e6)} | ${fmt(ceilingRate(x.machine) / base)}x |`,
    )
  }
  const g = row(servers[1] as (typeof servers)[number])
  const nrServer = servers.find((x) => x.name === 'node-red')
  const nr = nrServer ? row(nrServer) : undefined
  const gwServer = servers.find((x) => x.name === 'sluice-gw')
  const via = gwServer ? row(gwServer) : undefined
  recordSummary({
    source: `HTTP, ${conn} connections`,
    ratio: g.ratio,
    baseline: 'bare fastify',
    cpuGateway: g.cpu,
    cpuHosts: g.host,
    cpuBaseline: row(servers[0] as (typeof servers)[number]).cpu,
    machine: g.machine,
    machineBaseline: row(servers[0] as (typeof servers)[number]).machine,
    ceiling: ceilingRate(g.machine) / base,
    note: [
      nr ? `Node-RED ${fmt(nr.ratio)}x, ${fmt(nr.cpu, 0)} us/req` : 'Node-RED not run',
      via ? `through the gateway ${fmt(via.ratio)}x, ${fmt(via.cpu, 1)} + ${fmt(via.host, 1)}` : undefined,
    ]
      .filter((x) => x !== undefined)
      .join('; '),
  })
}
console.log(`\nsequential, one keep-alive connection, 3000 requests (ms)`)
for (const s of servers) console.log(`${s.label.padEnd(50)} p50 ${fmt(seq.get(s.name)?.p50 ?? 0, 3)}   p99 ${fmt(seq.get(s.name)?.p99 ?? 0, 3)}`)
console.log(`added p50 latency (sluice - bare): ${fmt((seq.get('sluice')?.p50 ?? 0) - (seq.get('bare')?.p50 ?? 0), 3)} ms`)
