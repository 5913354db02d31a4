/**
 * `sluice invoke --data`: the event's meta, shaped as the function's trigger would build it
 * (src/sdk/function.ts: MqttMeta, AmqpMeta, KafkaMeta, EventHubsMeta, HttpMeta, TimerMeta), so a
 * function typed with those types finds every field it was promised (`meta.query`, `meta.topic`).
 * Values stand for a hand-made event: wildcards of a topic filter become `invoke`, route
 * parameters are empty, positions are 0.
 */
import type { ConnectionConfig, FunctionConfig } from '../config/schema.js'

const str = (v: unknown, dflt: string): string => (typeof v === 'string' ? v : dflt)

/** The meta of a hand-made event for `fn`'s trigger kind; `now` is its time (ISO 8601). */
export function invokeMeta(fn: FunctionConfig, connection: ConnectionConfig | undefined, now: string, hasBody: boolean): Record<string, unknown> {
  const o = fn.trigger.options
  switch (fn.trigger.kind) {
    case 'mqtt': {
      const qos = o.qos === 0 ? 0 : 1
      const topic = str(o.topic, 'invoke')
        .split('/')
        .map((level) => (level === '+' || level === '#' ? 'invoke' : level))
        .join('/')
      return { topic, qos, retain: false, dup: false, packetId: qos === 0 ? null : 1 }
    }
    case 'amqp': {
      const queue = str(o.queue, '')
      return { queue, exchange: '', routingKey: queue, redelivered: false, deliveryTag: 1, deliveryCount: 1, headers: {} }
    }
    case 'kafka': {
      const topic = str(o.topic, Array.isArray(o.topics) ? str(o.topics[0], '') : '')
      return { topic, partition: 0, offset: 0, timestamp: Date.parse(now), key: null, headers: {} }
    }
    case 'eventhubs':
      return {
        eventHub: str(connection?.options.eventHub, ''),
        consumerGroup: str(o.consumerGroup, '$Default'),
        partitionId: '0',
        offset: '0',
        sequenceNumber: 0,
        enqueuedTimeUtc: now,
      }
    case 'http': {
      const methods = Array.isArray(o.methods) ? o.methods.map((m) => String(m).toUpperCase()) : ['POST']
      const method = hasBody && methods.includes('POST') ? 'POST' : (methods[0] ?? 'POST')
      const route = str(o.route, '')
      const params: Record<string, string> = {}
      for (const m of route.matchAll(/\{\*?([A-Za-z_][A-Za-z0-9_]*)\}/g)) params[m[1] as string] = ''
      const path = `/api/${route.replace(/\{[^}]*\}/g, '')}`.replace(/\/+/g, '/')
      return { method, path, url: path, params, query: {}, headers: {}, ip: '127.0.0.1' }
    }
    case 'timer':
      return { schedule: str(o.schedule, ''), timezone: str(o.timezone, 'UTC'), isPastDue: false }
    default:
      return {}
  }
}

/** A timer tick's body for a hand-made event (TimerBody), used when --data gives none. */
export function invokeTimerBody(fn: FunctionConfig, now: string): Record<string, unknown> {
  return { scheduledAt: now, isPastDue: false, schedule: str(fn.trigger.options.schedule, ''), scheduleStatus: {} }
}
