import { SluiceError, hasCode, isErrorCode } from '../errors.js'
import { deadLetterTable, type DeadLetterRow } from './table.js'

export interface Remote {
  url?: string | undefined
  key?: string | undefined
}

/**
 * Calls the admin API of a running gateway. An error answer that carries a sluice code is thrown
 * with that code (SLUICE_ERR_DEAD_LETTER_NOT_FOUND, SLUICE_ERR_FUNCTION_NOT_FOUND, ...); an
 * unreachable gateway or an answer without a code is SLUICE_ERR_CLI_REMOTE.
 */
export async function adminRequest(remote: Remote, method: string, path: string, body?: unknown): Promise<unknown> {
  const url = `${(remote.url ?? 'http://127.0.0.1:7071').replace(/\/$/, '')}${path}`
  const headers: Record<string, string> = {}
  const key = remote.key ?? process.env.SLUICE_ADMIN_KEY
  if (key) headers['x-sluice-key'] = key
  // Admin POSTs are always typed JSON: without an admin key the gateway refuses others (CSRF).
  const payload = body ?? (method === 'POST' ? {} : undefined)
  if (payload !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(url, { method, headers, ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}) })
  } catch (e) {
    throw new SluiceError(
      'SLUICE_ERR_CLI_REMOTE',
      `cannot reach the gateway at ${url}: ${(e as Error).cause ? String((e as Error).cause) : (e as Error).message}`,
    )
  }
  const text = await res.text()
  let json: { error?: { code?: unknown; message?: unknown } } = {}
  try {
    if (text) json = JSON.parse(text) as typeof json
  } catch {
    if (res.ok) throw new SluiceError('SLUICE_ERR_CLI_REMOTE', `${method} ${path}: the answer is not JSON: ${text.slice(0, 200)}`)
  }
  if (!res.ok) {
    const code = json.error?.code
    const message = typeof json.error?.message === 'string' ? json.error.message : text.slice(0, 500)
    if (isErrorCode(code) && code !== 'SLUICE_ERR_INTERNAL') throw new SluiceError(code, message, { context: { status: res.status } })
    throw new SluiceError('SLUICE_ERR_CLI_REMOTE', `${method} ${path}: ${res.status} ${message}${typeof code === 'string' ? ` [${code}]` : ''}`)
  }
  return json
}

/** Fills in the admin URL and key from the config file when not given. */
async function resolveRemote(values: { config: string; url?: string | undefined; key?: string | undefined }): Promise<Remote> {
  if (values.url) return { url: values.url, key: values.key }
  try {
    // Loaded only here: with --url the command needs neither the schema nor the connectors.
    const [{ CONNECTORS }, { loadConfig }] = await Promise.all([import('../config/connectors.js'), import('../config/load.js')])
    const { config } = await loadConfig(values.config, { connectors: CONNECTORS, compile: false })
    return { url: `http://127.0.0.1:${config.http.port}`, key: values.key ?? config.admin.key }
  } catch {
    return { key: values.key }
  }
}

const print = (v: unknown) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`)

/** `sluice dead-letters ...` and `sluice keys ...`: admin API calls against a running gateway. */
export async function runRemote(
  command: 'dead-letters' | 'keys',
  positionals: string[],
  values: {
    config: string
    url?: string | undefined
    key?: string | undefined
    function?: string | undefined
    limit?: string | undefined
    name?: string | undefined
    json?: boolean | undefined
  },
): Promise<number> {
  const remote = await resolveRemote(values)
  const [sub, arg] = positionals
  const usage = (u: string) => new SluiceError('SLUICE_ERR_CLI_USAGE', `usage: ${u}`)
  if (command === 'dead-letters') {
    if (sub === 'list') {
      const q = new URLSearchParams()
      if (values.function) q.set('function', values.function)
      if (values.limit) q.set('limit', values.limit)
      const answer = (await adminRequest(remote, 'GET', `/admin/dead-letters${q.size ? `?${q}` : ''}`)) as { items: DeadLetterRow[]; next?: string }
      if (values.json) print(answer)
      else process.stdout.write(deadLetterTable(answer.items, answer.next))
      return 0
    }
    if (sub === 'replay') {
      if (!arg) throw usage('sluice dead-letters replay <id>')
      let r: { outcome: { status: string } }
      try {
        r = (await adminRequest(remote, 'POST', `/admin/dead-letters/${encodeURIComponent(arg)}/replay`)) as typeof r
      } catch (e) {
        if (!hasCode(e, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')) throw e
        throw new SluiceError(
          'SLUICE_ERR_DEAD_LETTER_NOT_FOUND',
          `dead letter ${arg} does not exist at ${remote.url ?? 'the gateway'} (replayed letters are removed; list them with sluice dead-letters list)`,
        )
      }
      print(r)
      return r.outcome.status === 'done' ? 0 : 1
    }
    throw usage('sluice dead-letters list|replay')
  }
  if (!arg) throw usage(`sluice keys ${sub ?? 'create|list'} <function>`)
  if (sub === 'create') {
    print(await adminRequest(remote, 'POST', `/admin/functions/${encodeURIComponent(arg)}/keys`, values.name ? { name: values.name } : {}))
    return 0
  }
  if (sub === 'list') {
    print(await adminRequest(remote, 'GET', `/admin/functions/${encodeURIComponent(arg)}/keys`))
    return 0
  }
  throw usage('sluice keys create|list <function>')
}
