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

/**
 * Why a request may not call function `fn` (auth: function), or undefined when it presents one of
 * the function's keys (`hashes`) or the admin key.
 */
export function functionKeyRefusal(fn: string, req: FastifyRequest, hashes: readonly string[], adminHash: string | undefined): SluiceError | undefined {
  if (keyMatches(header(req, FUNCTION_KEY_HEADER), hashes) || (adminHash !== undefined && keyMatches(presentedAdminKey(req), [adminHash]))) return undefined
  return new SluiceError(
    'SLUICE_ERR_HTTP_UNAUTHORIZED',
    hashes.length === 0
      ? `function ${fn} has no keys yet: create one with \`sluice keys create ${fn}\``
      : `send a key of function ${fn} in ${FUNCTION_KEY_HEADER}`,
  )
}

export function isLoopback(ip: string): boolean {
  return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')
}

/**
 * How the admin API (and /metrics, the dashboard, the live feed) is protected:
 * - `key`: callers present admin.key;
 * - `loopback`: no key; only loopback callers that name a loopback host (or http.host) and come
 *   from no other site (see adminGuard);
 * - `disabled`: no key but http.trustProxy is set: behind a proxy every caller may look local, so
 *   nothing is served.
 */
export type AdminProtection = 'key' | 'loopback' | 'disabled'

export interface AdminAccess {
  protection: AdminProtection
  /** SHA-256 of admin.key (protection `key`). */
  keyHash?: string
  /** Host names (lower case, no port) a keyless admin request may carry in Host and Origin. */
  hosts: ReadonlySet<string>
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]']
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]'])

/** Derives the admin protection from the configuration. */
export function adminAccess(config: { admin: { key?: string | undefined }; http: { host: string; trustProxy?: unknown } }): AdminAccess {
  const hosts = new Set(LOOPBACK_NAMES)
  const bind = config.http.host.toLowerCase()
  if (!WILDCARD_HOSTS.has(bind)) hosts.add(bind.includes(':') && !bind.startsWith('[') ? `[${bind}]` : bind)
  if (config.admin.key !== undefined) return { protection: 'key', keyHash: hashKey(config.admin.key), hosts }
  const proxied = config.http.trustProxy !== undefined && config.http.trustProxy !== false
  return { protection: proxied ? 'disabled' : 'loopback', hosts }
}

/** `host[:port]` -> lower-case host without the port; IPv6 stays bracketed. */
function hostName(hostPort: string): string {
  const h = hostPort.trim().toLowerCase()
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1)
  const colon = h.indexOf(':')
  return colon === -1 ? h : h.slice(0, colon)
}

function crossSite(message: string): SluiceError {
  return new SluiceError('SLUICE_ERR_HTTP_CROSS_SITE', `${message}; no admin key is set, so the admin API serves only same-origin requests to a loopback host`)
}

/**
 * The rules for a keyless admin request (issue 9: a web page in the user's browser must not be
 * able to drive the API, by cross-site requests or by DNS rebinding):
 * the socket peer is loopback; `Host` names a loopback host or http.host; `Origin`, if sent, is
 * the same origin as `Host`; `Sec-Fetch-Site`, if sent, is `same-origin` or `none`; a POST
 * carries `content-type: application/json` (a cross-site page can only send simple bodies
 * without a preflight the server never grants).
 */
function checkLoopbackRequest(req: FastifyRequest, hosts: ReadonlySet<string>): void {
  if (!isLoopback(req.socket.remoteAddress ?? '')) {
    throw new SluiceError('SLUICE_ERR_HTTP_FORBIDDEN', 'no admin key is configured, so the admin API answers on loopback only')
  }
  const host = header(req, 'host')
  if (host === undefined || !hosts.has(hostName(host))) {
    throw crossSite(`the Host ${JSON.stringify(host ?? '')} is not a loopback name (${[...hosts].join(', ')})`)
  }
  const origin = header(req, 'origin')
  if (origin !== undefined) {
    let same = false
    try {
      const u = new URL(origin)
      same = (u.protocol === 'http:' || u.protocol === 'https:') && u.host.toLowerCase() === host.trim().toLowerCase()
    } catch {
      same = false
    }
    if (!same) throw crossSite(`the request comes from another site (Origin ${JSON.stringify(origin)})`)
  }
  const site = header(req, 'sec-fetch-site')
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw crossSite(`the request comes from another site (Sec-Fetch-Site: ${site})`)
  if (req.method === 'POST') {
    const type = (header(req, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/json') {
      throw new SluiceError('SLUICE_ERR_HTTP_UNSUPPORTED_MEDIA', 'admin POST requests must send content-type: application/json (an empty body is allowed)')
    }
  }
}

/**
 * Guards the admin API, /metrics, the dashboard and the live feed according to `access` (see
 * AdminProtection). Runs as an onRequest hook: before the body is read.
 *
 * `queryKey` also accepts the key as a `key` query parameter. Only for the live feed
 * (`GET /admin/events`), because a browser's EventSource cannot send headers.
 */
export function adminGuard(access: AdminAccess, opts: { queryKey?: boolean } = {}) {
  return async (req: FastifyRequest): Promise<void> => {
    if (access.protection === 'disabled') {
      throw new SluiceError(
        'SLUICE_ERR_HTTP_ADMIN_DISABLED',
        'the admin API is off: http.trustProxy is set and no admin key is configured; set admin.key and send it in x-sluice-key',
      )
    }
    if (access.protection === 'loopback' || access.keyHash === undefined) return checkLoopbackRequest(req, access.hosts)
    const fromQuery = opts.queryKey ? (req.query as { key?: unknown } | undefined)?.key : undefined
    if (!keyMatches(presentedAdminKey(req) ?? (typeof fromQuery === 'string' ? fromQuery : undefined), [access.keyHash])) {
      throw new SluiceError('SLUICE_ERR_HTTP_UNAUTHORIZED', `send the admin key in the ${ADMIN_KEY_HEADER} header`)
    }
  }
}

/** One line for the start log: where the admin API is and how it is protected. */
export function describeAdminAccess(access: AdminAccess, url: string, bindHost: string): { adminUrl: string; protection: AdminProtection; message: string } {
  const adminUrl = `${url}/admin/`
  const message =
    access.protection === 'key'
      ? `admin API and dashboard at ${adminUrl} (and every address the server listens on, ${bindHost}), protected by admin.key (x-sluice-key header)`
      : access.protection === 'loopback'
        ? `admin API and dashboard at ${adminUrl}, no admin.key: served only to loopback callers naming ${[...access.hosts].join(', ')} as Host, same-origin, POSTs as application/json; set admin.key to reach it from elsewhere`
        : 'admin API and dashboard are OFF: http.trustProxy is set and no admin.key is configured (a proxy makes every caller look local); set admin.key to turn them on'
  return { adminUrl, protection: access.protection, message }
}
