import type { Socket } from 'node:net'

/**
 * A framed message channel over a stream socket between the gateway and a worker host.
 *
 * Node's IPC channel serializes every message (JSON or the V8 serializer) and writes it alone;
 * on the hot path (one message per batch or HTTP request) that was the largest cost of the
 * gateway process. Here a message is a small JSON header plus an optional raw UTF-8 payload
 * (a batch of events, function code, a result envelope) that is never re-encoded, and writes of
 * one tick go out in one writev (cork/uncork).
 *
 * Frame: [u32 BE frame length][u32 BE header length][header JSON][payload]
 */
export class FrameChannel<Out extends object, In extends object> {
  private chunks: Buffer[] = []
  private buffered = 0
  private corked = false
  private closed = false

  constructor(
    private readonly socket: Socket,
    private readonly onFrame: (header: In, payload: string | undefined) => void,
  ) {
    socket.on('data', (chunk: Buffer) => this.read(chunk))
    socket.on('close', () => {
      this.closed = true
    })
    socket.on('error', () => {
      this.closed = true
    })
  }

  send(header: Out, payload?: string): boolean {
    if (this.closed || this.socket.destroyed) return false
    const head = JSON.stringify(header)
    const headLen = Buffer.byteLength(head)
    const payLen = payload === undefined ? 0 : Buffer.byteLength(payload)
    const buf = Buffer.allocUnsafe(8 + headLen + payLen)
    buf.writeUInt32BE(4 + headLen + payLen, 0)
    buf.writeUInt32BE(headLen, 4)
    buf.write(head, 8, 'utf8')
    if (payload !== undefined) buf.write(payload, 8 + headLen, 'utf8')
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.socket.uncork()
      })
    }
    this.socket.write(buf)
    return true
  }

  private read(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    while (this.buffered >= 4) {
      const first = this.chunks[0] as Buffer
      const head = first.length >= 4 ? first : Buffer.concat(this.chunks)
      const frameLen = head.readUInt32BE(0)
      if (this.buffered < 4 + frameLen) return
      const all = this.chunks.length === 1 ? first : Buffer.concat(this.chunks)
      const headLen = all.readUInt32BE(4)
      const header = JSON.parse(all.toString('utf8', 8, 8 + headLen)) as In
      const payload = frameLen > 4 + headLen ? all.toString('utf8', 8 + headLen, 4 + frameLen) : undefined
      const rest = all.subarray(4 + frameLen)
      this.chunks = rest.length > 0 ? [rest] : []
      this.buffered = rest.length
      this.onFrame(header, payload)
    }
  }

  close(): void {
    this.closed = true
    this.socket.destroy()
  }
}
