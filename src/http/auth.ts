import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { SluiceError } from '../errors.js'

export const ADMIN_KEY_HEADER = 'x-sluice-key'
export const FUNCTION_KEY_HEADER = 'x-functions-key'

/** Keys are stored and compared as SHA-256 digests: the store never holds a usable key. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

export function newKey(): string {
  return randomBytes(32).toString('base64url')
}

/** Compares a presented key with stored digests in time independent of where they differ. */
export function keyMatches(presented: string | undefined, hashes: readonly string[]): boolean {
  if (presented === undefined || presented === '') return false
  const digest = Buffer.from(hashKey(presented), 'hex')
  let ok = false
  for (const h of hashes) {
    const stored = Buffer.from(h, 'hex')
    if (stored.length === digest.length && timingSafeEqual(stored, digest)) ok = true
  }
  return ok
}

export function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** The admin key from x-sluice-key or `Authorization: Bearer <key>`. */
export function presentedAdminKey(req: FastifyRequest): string | undefined {
  const direct = header(req, ADMIN_KEY_HEADER)
  if (direct) return direct
  const auth = header(req, 'authorization')
  return auth?.startsWith('Bearer ') ? auth.slice(7) : undefined
}

export function isLoopback(ip: string): boolean {
  return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1' || ip.startsWith('127.')
}

/**
 * Guards the admin API, /metrics and the dashboard: with an admin key configured, callers must
 * present it; without one, only loopback callers are let in.
 *
 * `queryKey` also accepts the key as a `key` query parameter. Only for the live feed
 * (`GET /admin/events`), because a browser's EventSource cannot send headers.
 */
export function adminGuard(adminKeyHash: string | undefined, opts: { queryKey?: boolean } = {}) {
  return async (req: FastifyRequest): Promise<void> => {
    if (adminKeyHash === undefined) {
      if (!isLoopback(req.socket.remoteAddress ?? '')) {
        throw new SluiceError('SLUICE_ERR_HTTP_FORBIDDEN', 'no admin key is configured, so the admin API answers on loopback only')
      }
      return
    }
    const fromQuery = opts.queryKey ? (req.query as { key?: unknown } | undefined)?.key : undefined
    if (!keyMatches(presentedAdminKey(req) ?? (typeof fromQuery === 'string' ? fromQuery : undefined), [adminKeyHash])) {
      throw new SluiceError('SLUICE_ERR_HTTP_UNAUTHORIZED', `send the admin key in the ${ADMIN_KEY_HEADER} header`)
    }
  }
}
