/**
 * Serves the dashboard's built assets (ui/, built by `npm run build` into dist/ui): index.html for
 * the app's routes, hashed files under /ui/assets/ with a long cache. The page holds no data; every
 * data call goes through the admin API with its own auth.
 */
import { readFile } from 'node:fs/promises'
import { basename, dirname, extname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { SluiceError } from '../errors.js'

/** Paths of the single-page app: each answers index.html, the client routes from there. */
export const DASHBOARD_ROUTES = ['/', '/functions/:name', '/dead-letters'] as const

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
}

const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/

/** Only same-origin scripts, styles and connections; no framing. */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-cache',
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice: dashboard not built</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem">
<h1>The sluice dashboard has not been built</h1>
<p>Run <code>npm run build</code> in the sluice folder (<code>npm ci</code> and <code>npm test</code> do it too),
then reload this page. The admin API under <code>/admin/</code> works without it.</p>
</body></html>
`

/**
 * Where the built dashboard is: dist/ui next to the compiled server (dist/src/http -> dist/ui), or
 * under the project's dist/ when running from the TypeScript sources (src/http -> dist/ui).
 */
export function defaultDashboardDir(): string {
  const base = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
  return basename(base) === 'dist' ? join(base, 'ui') : join(base, 'dist', 'ui')
}

export interface DashboardOptions {
  /** Folder holding index.html and assets/. Default: defaultDashboardDir(). */
  dir?: string
  /** Runs before every dashboard response (the loopback rule when no admin key is set). */
  guard?: (req: FastifyRequest) => Promise<void>
}

/** Registers the dashboard's routes: DASHBOARD_ROUTES and /ui/assets/:file. */
export function registerDashboard(app: FastifyInstance, opts: DashboardOptions = {}): void {
  const dir = opts.dir ?? defaultDashboardDir()
  app.register(async (scope) => {
    if (opts.guard) scope.addHook('onRequest', opts.guard)

    const page = async (_req: FastifyRequest, reply: FastifyReply) => {
      let html: Buffer
      try {
        html = await readFile(join(dir, 'index.html'))
      } catch {
        return reply.code(503).headers({ 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).send(NOT_BUILT)
      }
      return reply.code(200).headers(PAGE_HEADERS).send(html)
    }
    for (const url of DASHBOARD_ROUTES) scope.get(url, page)

    scope.get<{ Params: { file: string } }>('/ui/assets/:file', async (req, reply) => {
      const name = req.params.file
      const type = CONTENT_TYPES[extname(name)]
      if (!ASSET_NAME.test(name) || type === undefined) throw notFound(req)
      let body: Buffer
      try {
        body = await readFile(join(dir, 'assets', name))
      } catch {
        throw notFound(req)
      }
      // Asset names carry a content hash: a changed file gets a new name.
      return reply
        .code(200)
        .headers({ 'content-type': type, 'cache-control': 'public, max-age=31536000, immutable', 'x-content-type-options': 'nosniff' })
        .send(body)
    })
  })
}

function notFound(req: FastifyRequest): SluiceError {
  return new SluiceError('SLUICE_ERR_HTTP_NOT_FOUND', `no dashboard asset ${req.url.split('?')[0]}`)
}
