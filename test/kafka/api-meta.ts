/**
 * ApiVersions (v0-v2), Metadata (v4) and FindCoordinator (v1) of the test broker.
 * https://kafka.apache.org/protocol#The_Messages_ApiVersions
 */
import type { BrokerContext, ApiDef } from './apis.js'
import { API, ERR, Writer, type Reader } from './protocol.js'

export const CLUSTER_ID = 'sluice-test-cluster'
export const NODE_ID = 0

/** ApiVersions, listing every API in `served` and itself. */
export function apiVersions(served: readonly ApiDef[]): ApiDef {
  const self: ApiDef = {
    key: API.ApiVersions,
    min: 0,
    max: 2,
    handle(_r: Reader, _ctx: BrokerContext, version: number): Writer {
      const w = new Writer().int16(ERR.NONE)
      w.array([...served, self], (w, a) => w.int16(a.key).int16(a.min).int16(a.max))
      if (version >= 1) w.int32(0)
      return w
    },
  }
  return self
}

export const metadata: ApiDef = {
  key: API.Metadata,
  min: 4,
  max: 4,
  handle(r, ctx): Writer {
    const requested = r.array((r) => r.string() ?? '')
    const autoCreate = r.bool() && ctx.autoCreateTopics
    const names = requested ?? [...ctx.store.topics.keys()]
    if (autoCreate) for (const name of names) if (name !== '' && !ctx.store.topics.has(name)) ctx.store.create(name, ctx.defaultPartitions)
    const w = new Writer().int32(0)
    w.array([NODE_ID], (w, id) => w.int32(id).string(ctx.host).int32(ctx.port).string(null))
    w.string(CLUSTER_ID).int32(NODE_ID)
    w.array(names, (w, name) => {
      const parts = ctx.store.topics.get(name) ?? []
      w.int16(ctx.store.topics.has(name) ? ERR.NONE : ERR.UNKNOWN_TOPIC_OR_PARTITION).string(name).bool(false)
      // One broker: it leads every partition and is its only replica.
      w.array(
        parts.map((_, i) => i),
        (w, id) => w.int16(ERR.NONE).int32(id).int32(NODE_ID).array([NODE_ID], (w, n) => w.int32(n)).array([NODE_ID], (w, n) => w.int32(n)),
      )
    })
    return w
  },
}

export const findCoordinator: ApiDef = {
  key: API.FindCoordinator,
  min: 1,
  max: 1,
  handle(r, ctx): Writer {
    r.string() // group id: this one broker coordinates every group
    r.int8() // coordinator type (0 group, 1 transaction)
    return new Writer().int32(0).int16(ERR.NONE).string(null).int32(NODE_ID).string(ctx.host).int32(ctx.port)
  },
}
