/**
 * Child process of guard.test.ts: installs the process guard with a drain that finishes an
 * "in-flight ack" asynchronously, then fails the way argv[2] says. Writes JSON lines to stdout:
 * the guard's log lines (pino-like) and `{ step }` markers.
 */
import { installProcessGuard } from '../../src/process-guard.js'

const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`)
const log = { error: (obj: object, msg?: string) => out({ level: 'error', ...obj, msg }) }
const mode = process.argv[2]

installProcessGuard({
  log,
  drain: async () => {
    out({ step: 'drain started' })
    // In-flight work that must finish before the exit: an ack that takes a few turns.
    await new Promise((r) => setTimeout(r, 200))
    if (mode === 'twice') void Promise.reject(new Error('second failure while draining'))
    await new Promise((r) => setTimeout(r, 200))
    out({ step: 'acked' })
  },
  deadlineMs: 30_000,
})

// Keeps the process alive like a running gateway would.
setInterval(() => undefined, 1000)
out({ step: 'ready' })

setTimeout(() => {
  if (mode === 'rejection' || mode === 'twice') {
    const err = Object.assign(new RangeError('Maximum call stack size exceeded'), { code: 'SLUICE_ERR_INTERNAL' })
    void Promise.reject(err)
  } else if (mode === 'exception') {
    throw new TypeError('cannot read properties of undefined')
  }
}, 50)
