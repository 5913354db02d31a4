// autocannon in its own process; reports requests/s and latency to the parent (bench/http.ts).
// `machine`: the whole machine's CPU (us) while the load ran, this process's start-up left out.
import autocannon from 'autocannon'
import { machineCpu } from './cpu.js'

const [url, seconds, connections] = process.argv.slice(2)
const m0 = machineCpu()
const r = await autocannon({ url: url as string, duration: Number(seconds), connections: Number(connections), pipelining: 1 })
const machine = machineCpu() - m0
process.send?.({ rps: r.requests.average, total: r.requests.total, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx, machine })
process.disconnect?.()
