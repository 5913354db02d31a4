/**
 * Maps node-postgres errors to sluice codes, and keeps passwords out of every message: only
 * `redactUrl` output and the server's own messages (which never carry the password) are shown.
 */
import { SluiceError, type ErrorCode } from '../errors.js'

/** The URL with any password replaced by `***` (unparseable input is not echoed at all). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '(unparseable URL)'
  }
}

/** Checks store.url's shape before connecting. */
export function parseStoreUrl(url: string): URL {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new SluiceError('SLUICE_ERR_STORE_URL', 'store.url is not a URL; write postgres://user:password@host:5432/database', {
      context: { path: 'store.url' },
    })
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new SluiceError('SLUICE_ERR_STORE_URL', `store.url must start with postgres:// (it starts with ${u.protocol}//)`, { context: { path: 'store.url' } })
  }
  if (!u.hostname) throw new SluiceError('SLUICE_ERR_STORE_URL', `store.url ${redactUrl(url)} names no host`, { context: { path: 'store.url' } })
  return u
}

interface PgLikeError {
  code?: string
  message?: string
  errno?: number
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOENT'])

/**
 * True when the error says the server cannot be talked to (as opposed to a statement the server
 * rejected): socket errors, "connection terminated", admin shutdown (57P01...), too many
 * connections (53300), connection exceptions (08xxx), and our own SLUICE_ERR_STORE_DOWN.
 */
export function isConnectionError(e: unknown): boolean {
  const err = e as PgLikeError
  const code = err?.code
  if (code === 'SLUICE_ERR_STORE_DOWN') return true
  if (code !== undefined && CONNECTION_CODES.has(code)) return true
  if (code !== undefined && /^(08|57P|53300)/.test(code)) return true
  const msg = String(err?.message ?? '')
  return code === undefined && /connection|terminated|timeout|Connection terminated|not queryable|closed/i.test(msg)
}

/** The error a failed first connection becomes: which store, what went wrong, what to do. */
export function startError(e: unknown, url: string): SluiceError {
  if (typeof (e as { code?: unknown }).code === 'string' && String((e as { code: string }).code).startsWith('SLUICE_ERR_')) return e as SluiceError
  const err = e as PgLikeError
  const where = `PostgreSQL store ${redactUrl(url)}`
  const pick = (code: ErrorCode, why: string) => new SluiceError(code, `${where}: ${why}`, { cause: e, context: { path: 'store.url' } })
  switch (err.code) {
    case '28P01':
    case '28000':
      return pick('SLUICE_ERR_STORE_AUTH', `the server refused the login (${err.message ?? 'authentication failed'})`)
    case '3D000':
      return pick('SLUICE_ERR_STORE_DATABASE_MISSING', err.message ?? 'the database does not exist')
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return pick('SLUICE_ERR_STORE_UNREACHABLE', 'the host name does not resolve')
    case 'ECONNREFUSED':
      return pick('SLUICE_ERR_STORE_UNREACHABLE', 'connection refused (is PostgreSQL running and listening on that port?)')
    default:
      if (isConnectionError(e)) return pick('SLUICE_ERR_STORE_UNREACHABLE', err.message ?? 'cannot connect')
      return pick('SLUICE_ERR_STORE_OPEN', err.message ?? String(e))
  }
}
