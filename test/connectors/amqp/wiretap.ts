/**
 * A TCP relay between a client and RabbitMQ that reads the AMQP 0-9-1 frames the client sends and
 * records its basic.ack and basic.nack methods, so a test sees the acks on the wire (what the
 * broker receives) rather than trusting the client library. It does not change any byte.
 *
 * Frame: type (1) channel (2) size (4) payload (size) 0xCE; a method payload starts with class
 * (2) and method (2). basic.ack is 60/80 with delivery-tag (8) and a bit octet (multiple);
 * basic.nack is 60/120 with delivery-tag (8) and bits multiple (0x1) and requeue (0x2).
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface Settle {
  method: 'ack' | 'nack'
  channel: number
  tag: number
  multiple: boolean
  requeue?: boolean
  /** Date.now() when the frame passed the relay. */
  at: number
}

export class Wiretap {
  readonly settles: Settle[] = []
  private readonly sockets = new Set<Socket>()
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target = { host: '127.0.0.1', port: 5672 }): Promise<Wiretap> {
    let tap: Wiretap | undefined
    const server = createServer((client) => {
      const upstream = connect(target)
      for (const s of [client, upstream]) {
        tap?.sockets.add(s)
        s.on('close', () => tap?.sockets.delete(s))
        s.on('error', () => undefined)
      }
      const parse = tap ? frameParser((f) => tap?.onFrame(f)) : () => undefined
      client.on('data', (chunk: Buffer) => {
        parse(chunk)
        upstream.write(chunk)
      })
      upstream.pipe(client)
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const addr = server.address()
    tap = new Wiretap(server, typeof addr === 'object' && addr ? addr.port : 0)
    return tap
  }

  url(user = 'guest:guest'): string {
    return `amqp://${user}@127.0.0.1:${this.port}`
  }

  private onFrame(f: { type: number; channel: number; payload: Buffer }): void {
    if (f.type !== 1 || f.payload.length < 4) return
    const cls = f.payload.readUInt16BE(0)
    const method = f.payload.readUInt16BE(2)
    if (cls !== 60 || (method !== 80 && method !== 120)) return
    const tag = Number(f.payload.readBigUInt64BE(4))
    const bits = f.payload.readUInt8(12)
    const at = Date.now()
    if (method === 80) this.settles.push({ method: 'ack', channel: f.channel, tag, multiple: (bits & 1) === 1, at })
    else this.settles.push({ method: 'nack', channel: f.channel, tag, multiple: (bits & 1) === 1, requeue: (bits & 2) === 2, at })
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((r) => this.server.close(() => r()))
  }
}

/** Feeds client-to-server bytes; calls `onFrame` for each complete frame after the protocol header. */
function frameParser(onFrame: (f: { type: number; channel: number; payload: Buffer }) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0)
  let headerSeen = false
  return (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    if (!headerSeen) {
      if (buf.length < 8) return
      buf = buf.subarray(8) // "AMQP" 0 0 9 1
      headerSeen = true
    }
    while (buf.length >= 7) {
      const size = buf.readUInt32BE(3)
      if (buf.length < 8 + size) return
      onFrame({ type: buf.readUInt8(0), channel: buf.readUInt16BE(1), payload: buf.subarray(7, 7 + size) })
      buf = buf.subarray(8 + size)
    }
  }
}
