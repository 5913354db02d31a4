import { CONNECTORS } from '../config/connectors.js'
import { loadConfig } from '../config/load.js'
import { SluiceError } from '../errors.js'

export interface Remote {
  url?: string | undefined
  key?: string | undefined
}

/** Calls the admin API of a running gateway; throws SLUICE_ERR_CLI_REMOTE with the answer's error. */
export async function adminRequest(remote: Remote, method: string, path: string, body?: unknown): Promise<unknown> {
  const url = `${(remote.url ?? 'http://127.0.0.1:7071').replace(/\/$/, '')}${path}`
  const headers: Record<string, string> = {}
  const key = remote.key ?? process.env.SLUICE_ADMIN_KEY
  if (key) headers['x-sluice-key'] = key
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(url, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  } catch (e) {
    throw new SluiceError('SLUICE_ERR_CLI_REMOTE', `cannot reach the gateway at ${url}: ${(e as Error).cause ? String((e as Error).cause) : (e as Error).message}`)
  }
  const text = await res.text()
  const json = text ? (JSON.parse(text) as { error?: { code: string; message: string } }) : {}
  if (!res.ok) throw new SluiceError('SLUICE_ERR_CLI_REMOTE', `${method} ${path}: ${res.status} ${json.error ? `${json.error.message} [${json.error.code}]` : text}`)
  return json
}

/** Fills in the admin URL and key from the config file when not given. */
async function resolveRemote(values: { config: string; url?: string | undefined; key?: string | undefined }): Promise<Remote> {
  if (values.url) return { url: values.url, key: values.key }
  try {
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
  values: { config: string; url?: string | undefined; key?: string | undefined; function?: string | undefined; limit?: string | undefined; name?: string | undefined },
): Promise<number> {
  const remote = await resolveRemote(values)
  const [sub, arg] = positionals
  const usage = (u: string) => new SluiceError('SLUICE_ERR_CLI_USAGE', `usage: ${u}`)
  if (command === 'dead-letters') {
    if (sub === 'list') {
      const q = new URLSearchParams()
      if (values.function) q.set('function', values.function)
      if (values.limit) q.set('limit', values.limit)
      print(await adminRequest(remote, 'GET', `/admin/dead-letters${q.size ? `?${q}` : ''}`))
      return 0
    }
    if (sub === 'replay') {
      if (!arg) throw usage('sluice dead-letters replay <id>')
      const r = (await adminRequest(remote, 'POST', `/admin/dead-letters/${encodeURIComponent(arg)}/replay`)) as { outcome: { status: string } }
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
