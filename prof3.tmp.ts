import autocannon from 'autocannon'
import { benchGateway } from './bench/common.js'
const gw = await benchGateway(`http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1 }\nstore: { path: ':memory:' }\nfunctions:\n  status:\n    code: fn.js\n    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }\n    scale: { min: 10, max: 10 }\n`, { 'fn.js': `export default async () => ({ a: 1 })` })
const r = await autocannon({ url: `${gw.url}/api/stations/x`, duration: 4, connections: 10 })
console.log('rps', r.requests.average)
await gw.stop()
