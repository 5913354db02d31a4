/**
 * `url: embedded`: an MQTT broker (aedes) inside the gateway process, so the demo runs on a bare
 * machine. Every trigger and output on one embedded connection shares one broker, refcounted:
 * it starts with the first user and stops when the last one releases it.
 *
 * Not covered: aedes speaks MQTT 3.1.1 (not 5), keeps sessions and queued messages in memory only
 * (they die with the gateway process) and does not do shared subscriptions. Use Mosquitto (or
 * another broker) for anything that must survive a restart.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import type { Logger } from '../../src/sdk/index.js'

export interface EmbeddedLease {
  /** mqtt://host:port of the running broker. */
  readonly url: string
  /** Gives the broker back; the last release stops it. Idempotent. */
  release(): Promise<void>
}

interface Running {
  refs: number
  ready: Promise<{ url: string; stop(): Promise<void> }>
}

/** By `host:port`, or for port 0 by the connection's (frozen, shared) options object. */
const brokers = new Map<unknown, Running>()

/** Number of embedded brokers running in this process (tests check that stops release them). */
export function embeddedBrokerCount(): number {
  return brokers.size
}

export async function acquireEmbedded(connection: object, opts: { host: string; port: number }, log: Logger): Promise<EmbeddedLease> {
  const key = opts.port === 0 ? connection : `${opts.host}:${opts.port}`
  let b = brokers.get(key)
  if (!b) {
    b = { refs: 0, ready: startBroker(opts, log) }
    brokers.set(key, b)
    const entry = b
    entry.ready.catch(() => {
      if (brokers.get(key) === entry) brokers.delete(key)
    })
  }
  b.refs++
  const entry = b
  let running: { url: string; stop(): Promise<void> }
  try {
    running = await entry.ready
  } catch (e) {
    entry.refs--
    throw e
  }
  let released = false
  return {
    url: running.url,
    release: async () => {
      if (released) return
      released = true
      if (--entry.refs > 0) return
      if (brokers.get(key) === entry) brokers.delete(key)
      await running.stop()
    },
  }
}

async function startBroker(opts: { host: string; port: number }, log: Logger): Promise<{ url: string; stop(): Promise<void> }> {
  const aedes = await Aedes.createBroker()
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    aedes.handle(socket)
  })
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'embedded broker: client error'))
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (e) {
    await new Promise<void>((r) => aedes.close(() => r()))
    throw e
  }
  const port = (server.address() as AddressInfo).port
  const url = `mqtt://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`
  log.info({ url }, 'embedded MQTT broker listening')
  return {
    url,
    stop: async () => {
      await new Promise<void>((r) => aedes.close(() => r()))
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
      log.info({ url }, 'embedded MQTT broker stopped')
    },
  }
}
