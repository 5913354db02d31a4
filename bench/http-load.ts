// autocannon in its own process; reports requests/s and latency to the parent (bench/http.ts).
import autocannon from 'autocannon'

const [url, seconds, connections] = process.argv.slice(2)
const r = await autocannon({ url: url as string, duration: Number(seconds), connections: Number(connections), pipelining: 1 })
process.send?.({ rps: r.requests.average, total: r.requests.total, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx })
process.disconnect?.()
