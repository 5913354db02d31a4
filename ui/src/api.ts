/**
 * Calls to the admin API. The admin key the user entered lives in sessionStorage (this tab only)
 * and goes out in the x-sluice-key header; without a key (a gateway with no admin.key, reached on
 * loopback) calls go out bare. A 401 tells the listeners so the app can ask for the key.
 */
const KEY_STORAGE = 'sluice.adminKey'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

type Listener = () => void
const unauthorizedListeners = new Set<Listener>()
const keyListeners = new Set<Listener>()

export function adminKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE)
}

export function setAdminKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key)
  else sessionStorage.removeItem(KEY_STORAGE)
  for (const l of keyListeners) l()
}

/** Called when the key changes (entered or forgotten). */
export function onKeyChange(l: Listener): () => void {
  keyListeners.add(l)
  return () => keyListeners.delete(l)
}

/** Called when a call was refused for a missing or wrong key. */
export function onUnauthorized(l: Listener): () => void {
  unauthorizedListeners.add(l)
  return () => unauthorizedListeners.delete(l)
}

export function authHeaders(): Record<string, string> {
  const key = adminKey()
  return key ? { 'x-sluice-key': key } : {}
}

/** Throws ApiError for a non-2xx answer, with the server's error code and message. */
export async function checkResponse(res: Response): Promise<void> {
  if (res.ok) return
  let code = `HTTP_${res.status}`
  let message = res.statusText
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } }
    code = body.error?.code ?? code
    message = body.error?.message ?? message
  } catch {
    // not JSON: keep the status text
  }
  if (res.status === 401) for (const l of unauthorizedListeners) l()
  throw new ApiError(res.status, code, message)
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...authHeaders() }
  const method = init.method ?? 'GET'
  // Admin POSTs are always typed JSON: without an admin key the gateway refuses others (CSRF).
  const body = init.body ?? (method === 'POST' ? {} : undefined)
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    ...(init.signal ? { signal: init.signal } : {}),
  })
  await checkResponse(res)
  if (res.status === 204) return undefined as T
  return (await res.json()) as T
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.code}: ${e.message}`
  return e instanceof Error ? e.message : String(e)
}
