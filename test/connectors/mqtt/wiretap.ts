/**
 * A TCP proxy in front of a real broker that records the MQTT packets going each way, so tests see
 * what the broker sees: which PUBLISH (packet id, topic, payload) came on which connection, and
 * when each PUBACK went out. It can also cut every connection (a network failure without a
 * broker restart).
 *
 * It decodes only what the tests need: the fixed header, CONNECT's protocol level, PUBLISH
 * (topic, packet id, payload; MQTT 5 properties skipped) and the packet id of PUBACK. It does not
 * check or change anything.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'

const TYPES = [
  'reserved',
  'connect',
  'connack',
  'publish',
  'puback',
  'pubrec',
  'pubrel',
  'pubcomp',
  'subscribe',
  'suback',
  'unsubscribe',
  'unsuback',
  'pingreq',
  'pingresp',
  'disconnect',
  'auth',
]

/** Shared by every tap in the process, so packets seen by two taps can be ordered. */
let seq = 0

export interface TapPacket {
  /** Order in which the taps of this process saw the packets (every tap, connection and direction). */
  seq: number
  /** Connection number (1, 2, ... in accept order). */
  conn: number
  dir: 'toBroker' | 'toClient'
  cmd: string
  messageId?: number
  topic?: string
  payload?: string
  dup?: boolean
  qos?: number
}

/** Splits a byte stream into MQTT packets. */
class Frames {
  private buf: Buffer = Buffer.alloc(0)
  protocolVersion = 4

  push(chunk: Buffer): Array<{ type: number; flags: number; body: Buffer }> {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: Array<{ type: number; flags: number; body: Buffer }> = []
    for (;;) {
      if (this.buf.length < 2) break
      let len = 0
      let mult = 1
      let i = 1
      let complete = false
      for (; i < 5 && i < this.buf.length; i++) {
        const b = this.buf[i] as number
        len += (b & 0x7f) * mult
        mult *= 128
        if ((b & 0x80) === 0) {
          complete = true
          break
        }
      }
      if (!complete) break
      const start = i + 1
      if (this.buf.length < start + len) break
      const b0 = this.buf[0] as number
      out.push({ type: b0 >> 4, flags: b0 & 15, body: this.buf.subarray(start, start + len) })
      this.buf = this.buf.subarray(start + len)
    }
    return out
  }
}

function varintEnd(b: Buffer, pos: number): { value: number; end: number } {
  let value = 0
  let mult = 1
  for (;;) {
    const x = b[pos++] as number
    value += (x & 0x7f) * mult
    mult *= 128
    if ((x & 0x80) === 0) return { value, end: pos }
  }
}

function decode(frame: { type: number; flags: number; body: Buffer }, v5: boolean): Omit<TapPacket, 'seq' | 'conn' | 'dir'> {
  const cmd = TYPES[frame.type] ?? 'unknown'
  const b = frame.body
  if (cmd === 'publish') {
    const qos = (frame.flags >> 1) & 3
    const topicLen = b.readUInt16BE(0)
    const topic = b.subarray(2, 2 + topicLen).toString()
    let pos = 2 + topicLen
    let messageId: number | undefined
    if (qos > 0) {
      messageId = b.readUInt16BE(pos)
      pos += 2
    }
    if (v5) {
      const props = varintEnd(b, pos)
      pos = props.end + props.value
    }
    return { cmd, topic, qos, dup: (frame.flags & 8) !== 0, payload: b.subarray(pos).toString(), ...(messageId === undefined ? {} : { messageId }) }
  }
  if (cmd === 'puback' || cmd === 'pubrec' || cmd === 'pubrel' || cmd === 'pubcomp' || cmd === 'suback' || cmd === 'subscribe')
    return { cmd, messageId: b.readUInt16BE(0) }
  return { cmd }
}

export interface Tap {
  /** mqtt://127.0.0.1:<port> of the proxy. */
  url: string
  packets: TapPacket[]
  /** Called with each packet as it passes. */
  onPacket: ((p: TapPacket) => void) | undefined
  /** Cuts every open connection (both sides). */
  dropAll(): void
  close(): Promise<void>
}

export async function wiretap(target: { host?: string; port: number }): Promise<Tap> {
  let conns = 0
  const sockets = new Set<Socket>()
  const tap: Tap = {
    url: '',
    packets: [],
    onPacket: undefined,
    dropAll: () => {
      for (const s of sockets) s.destroy()
    },
    close: async () => {
      tap.dropAll()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  const server: Server = createServer((client) => {
    const conn = ++conns
    const upstream = connect(target.port, target.host ?? '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    const toBroker = new Frames()
    const toClient = new Frames()
    const record = (dir: TapPacket['dir'], frames: Array<{ type: number; flags: number; body: Buffer }>) => {
      for (const f of frames) {
        if (f.type === 1) toClient.protocolVersion = toBroker.protocolVersion = f.body[6] as number
        const p: TapPacket = { seq: ++seq, conn, dir, ...decode(f, toBroker.protocolVersion === 5) }
        tap.packets.push(p)
        tap.onPacket?.(p)
      }
    }
    client.on('data', (d: Buffer) => {
      record('toBroker', toBroker.push(d))
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      record('toClient', toClient.push(d))
      client.write(d)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', end)
    upstream.on('error', end)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  tap.url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  return tap
}

/** The PUBLISH (to the client) each PUBACK (from the client) answers, on the same connection. */
export function ackedPublishes(packets: TapPacket[]): Array<{ ack: TapPacket; publish: TapPacket | undefined }> {
  const last = new Map<string, TapPacket>()
  const out: Array<{ ack: TapPacket; publish: TapPacket | undefined }> = []
  for (const p of packets) {
    const k = `${p.conn}:${p.messageId}`
    if (p.dir === 'toClient' && p.cmd === 'publish' && p.messageId !== undefined) last.set(k, p)
    else if (p.dir === 'toBroker' && p.cmd === 'puback') out.push({ ack: p, publish: last.get(k) })
  }
  return out
}
