/**
 * The request/response nodes of the Event Hubs test server: `$cbs` (claims-based security: the
 * client puts a SAS token for every address before it opens a link there) and `$management`
 * (hub and partition properties).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Message } from 'rhea'
import type { Hub } from './partition-log.js'

export interface NodeResponse {
  status: number
  description: string
  /** AMQP error condition for a failed request (error-condition). */
  condition?: string
  body?: unknown
}

/** SAS key names and keys the server accepts (name -> key). Empty: any token is accepted. */
export type SasKeys = Readonly<Record<string, string>>

/**
 * Checks a token as the service does: `SharedAccessSignature sr=..&sig=..&se=..&skn=..`, signed
 * with HMAC-SHA256 over `<url-encoded resource>\n<expiry>` with the named key, not yet expired.
 */
export function verifySas(token: string, keys: SasKeys, nowSeconds = Date.now() / 1000): string | undefined {
  if (Object.keys(keys).length === 0) return undefined
  const m = /^SharedAccessSignature (.*)$/.exec(token)
  if (!m?.[1]) return 'not a SharedAccessSignature token'
  const fields = new Map(m[1].split('&').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const))
  const sr = fields.get('sr')
  const sig = fields.get('sig')
  const se = fields.get('se')
  const skn = fields.get('skn')
  if (!sr || !sig || !se || !skn) return 'the token misses sr, sig, se or skn'
  const key = keys[decodeURIComponent(skn)]
  if (key === undefined) return `unknown key name ${decodeURIComponent(skn)}`
  if (Number(se) < nowSeconds) return 'the token has expired'
  const expected = Buffer.from(encodeURIComponent(createHmac('sha256', key).update(`${sr}\n${se}`).digest('base64')))
  const given = Buffer.from(sig)
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'InvalidSignature: the token signature does not match'
  return undefined
}

const props = (m: Message): Record<string, unknown> => (m.application_properties ?? {}) as Record<string, unknown>

/** `$cbs` put-token. */
export function handleCbs(req: Message, keys: SasKeys): NodeResponse {
  const p = props(req)
  if (p.operation !== 'put-token') return { status: 400, description: `unsupported $cbs operation ${String(p.operation)}`, condition: 'amqp:not-implemented' }
  if (typeof req.body !== 'string') return { status: 400, description: 'put-token needs the token as a string body', condition: 'amqp:decode-error' }
  const problem = verifySas(req.body, keys)
  if (problem) return { status: 401, description: problem, condition: 'amqp:unauthorized-access' }
  return { status: 200, description: 'OK' }
}

/** `$management` READ of com.microsoft:eventhub and com.microsoft:partition. */
export function handleManagement(req: Message, hubs: ReadonlyMap<string, Hub>): NodeResponse {
  const p = props(req)
  if (p.operation !== 'READ') return { status: 400, description: `unsupported $management operation ${String(p.operation)}`, condition: 'amqp:not-implemented' }
  const hub = typeof p.name === 'string' ? hubs.get(p.name) : undefined
  if (!hub) return { status: 404, description: `The messaging entity '${String(p.name)}' could not be found.`, condition: 'amqp:not-found' }
  if (p.type === 'com.microsoft:eventhub') {
    return {
      status: 200,
      description: 'OK',
      body: {
        name: hub.name,
        type: 'com.microsoft:eventhub',
        created_at: hub.createdAt,
        partition_count: hub.partitions.length,
        partition_ids: hub.partitions.map((x) => x.id),
      },
    }
  }
  if (p.type === 'com.microsoft:partition') {
    const part = typeof p.partition === 'string' ? hub.partition(p.partition) : undefined
    if (!part)
      return { status: 404, description: `partition ${String(p.partition)} of ${hub.name} does not exist`, condition: 'com.microsoft:argument-out-of-range' }
    return { status: 200, description: 'OK', body: { type: 'com.microsoft:partition', ...part.properties() } }
  }
  return { status: 400, description: `unsupported $management type ${String(p.type)}`, condition: 'amqp:not-implemented' }
}
