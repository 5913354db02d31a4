/**
 * Where a new HTTP connection is served: the gateway's own server, or a worker host it is handed
 * to (direct HTTP, direct-http.ts). The server's 'connection' listeners are taken over; a new
 * connection's first bytes are read here, and when they hold a whole request (head, and a body by
 * Content-Length; no chunked body, Expect or Upgrade) that `target` places on a host, the socket
 * goes there with those bytes. Otherwise the bytes are put back and the server serves it as before.
 */
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { HttpConnMessage } from '../sandbox/protocol.js'
import type { Logger } from '../sdk/index.js'

/** A new connection that sends nothing this long goes to the gateway's server (its timeouts apply). */
const PEEK_MS = 1000

export interface HandoffTarget {
  hostId: number
  fn: string
}

export interface HandoffOptions {
  /** False: every connection stays with the server, unread. */
  active(): boolean
  /** The host that serves a connection whose first request is `method url`, if any. */
  target(method: string, url: string): HandoffTarget | undefined
  /** Sends the socket; `done(false)` when the host did not get it. */
  hand(target: HandoffTarget, m: HttpConnMessage, socket: Socket, done: (ok: boolean) => void): void
  log: Logger
}

type Listener = (socket: Socket) => void

/** Takes over `server`'s new connections (call once it listens). */
export function interceptConnections(server: Server, opts: HandoffOptions): void {
  const listeners = server.listeners('connection') as Listener[]
  server.removeAllListeners('connection')
  // Read nothing before the first bytes decide where the connection goes.
  ;(server as Server & { pauseOnConnect: boolean }).pauseOnConnect = true

  /** The connection stays with the server, with the bytes already read put back. */
  const keep = (socket: Socket, head: Buffer | undefined): void => {
    if (head) socket.unshift(head)
    for (const l of listeners) l.call(server, socket)
    socket.resume()
  }

  const hand = (socket: Socket, head: Buffer, target: HandoffTarget): void => {
    // Nothing more is read here: what the client sends next is the host's to read.
    ;(socket as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.()
    opts.hand(target, { t: 'http-conn', head: head.toString('base64') }, socket, (ok) => {
      if (ok) return
      opts.log.warn({ host: target.hostId, function: target.fn }, 'a connection could not be handed to its worker host; the client reconnects')
      socket.destroy()
    })
  }

  server.on('connection', (socket: Socket) => {
    if (!opts.active()) return keep(socket, undefined)
    const onError = () => socket.destroy()
    const timer = setTimeout(() => {
      socket.removeListener('data', onData)
      socket.removeListener('error', onError)
      keep(socket, undefined)
    }, PEEK_MS)
    const onData = (chunk: Buffer) => {
      clearTimeout(timer)
      socket.removeListener('error', onError)
      socket.pause()
      const target = targetOf(chunk, opts)
      if (target) hand(socket, chunk, target)
      else keep(socket, chunk)
    }
    socket.once('data', onData)
    socket.on('error', onError)
    socket.once('close', () => clearTimeout(timer))
    socket.resume()
  })
}

/** The host for a connection starting with `chunk`, when it holds a whole request a host serves. */
function targetOf(chunk: Buffer, opts: HandoffOptions): HandoffTarget | undefined {
  const end = chunk.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const head = chunk.toString('latin1', 0, end)
  const line = head.indexOf('\r\n')
  const first = line < 0 ? head : head.slice(0, line)
  const sp1 = first.indexOf(' ')
  const sp2 = first.indexOf(' ', sp1 + 1)
  if (sp1 < 0 || sp2 < 0) return undefined
  const url = first.slice(sp1 + 1, sp2)
  if (!url.startsWith('/api/')) return undefined
  const lower = head.toLowerCase()
  if (lower.includes('\r\ntransfer-encoding:') || lower.includes('\r\nexpect:') || lower.includes('\r\nupgrade:')) return undefined
  const length = /\r\ncontent-length:[ \t]*(\d+)/.exec(lower)
  if (length && end + 4 + Number(length[1]) > chunk.length) return undefined
  return opts.target(first.slice(0, sp1), url)
}
