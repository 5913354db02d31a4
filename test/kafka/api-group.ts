/**
 * Consumer-group APIs of the test broker: JoinGroup (v2), SyncGroup (v1), Heartbeat (v1),
 * LeaveGroup (v1), OffsetCommit (v3) and OffsetFetch (v3), on top of GroupCoordinator.
 * https://kafka.apache.org/protocol#The_Messages_JoinGroup
 */
import type { ApiDef } from './apis.js'
import { API, ERR, Writer } from './protocol.js'

export const joinGroup: ApiDef = {
  key: API.JoinGroup,
  min: 2,
  max: 2,
  async handle(r, ctx, _version, clientId): Promise<Writer> {
    const groupId = r.string() ?? ''
    const sessionTimeoutMs = r.int32()
    const rebalanceTimeoutMs = r.int32()
    const memberId = r.string() ?? ''
    const protocolType = r.string() ?? ''
    const protocols = r.array((r) => ({ name: r.string() ?? '', metadata: r.bytes() ?? Buffer.alloc(0) })) ?? []
    const res = await ctx.groups.join(groupId, { memberId, clientId, sessionTimeoutMs, rebalanceTimeoutMs, protocolType, protocols })
    const w = new Writer().int32(0).int16(res.error).int32(res.generation).string(res.protocol).string(res.leader).string(res.memberId)
    return w.array(res.members, (w, m) => w.string(m.memberId).bytes(m.metadata))
  },
}

export const syncGroup: ApiDef = {
  key: API.SyncGroup,
  min: 1,
  max: 1,
  async handle(r, ctx): Promise<Writer> {
    const groupId = r.string() ?? ''
    const generation = r.int32()
    const memberId = r.string() ?? ''
    const assignments = r.array((r) => ({ memberId: r.string() ?? '', assignment: r.bytes() ?? Buffer.alloc(0) })) ?? []
    const res = await ctx.groups.sync(groupId, generation, memberId, assignments)
    return new Writer().int32(0).int16(res.error).bytes(res.assignment)
  },
}

export const heartbeat: ApiDef = {
  key: API.Heartbeat,
  min: 1,
  max: 1,
  handle(r, ctx): Writer {
    const groupId = r.string() ?? ''
    const generation = r.int32()
    const memberId = r.string() ?? ''
    return new Writer().int32(0).int16(ctx.groups.heartbeat(groupId, generation, memberId))
  },
}

export const leaveGroup: ApiDef = {
  key: API.LeaveGroup,
  min: 1,
  max: 1,
  handle(r, ctx): Writer {
    const groupId = r.string() ?? ''
    const memberId = r.string() ?? ''
    return new Writer().int32(0).int16(ctx.groups.leave(groupId, memberId))
  },
}

export const offsetCommit: ApiDef = {
  key: API.OffsetCommit,
  min: 3,
  max: 3,
  handle(r, ctx): Writer {
    const groupId = r.string() ?? ''
    const generation = r.int32()
    const memberId = r.string() ?? ''
    r.int64() // retention time: offsets are kept forever
    const topics = r.array((r) => ({ name: r.string() ?? '', parts: r.array((r) => ({ partition: r.int32(), offset: r.int64(), metadata: r.string() })) ?? [] })) ?? []
    const entries = topics.flatMap((t) =>
      t.parts.filter((p) => ctx.store.partition(t.name, p.partition)).map((p) => ({ topic: t.name, partition: p.partition, offset: p.offset, metadata: p.metadata })),
    )
    const error = ctx.groups.commit(groupId, generation, memberId, entries)
    const w = new Writer().int32(0)
    return w.array(topics, (w, t) =>
      w.string(t.name).array(t.parts, (w, p) => w.int32(p.partition).int16(ctx.store.partition(t.name, p.partition) ? error : ERR.UNKNOWN_TOPIC_OR_PARTITION)),
    )
  },
}

export const offsetFetch: ApiDef = {
  key: API.OffsetFetch,
  min: 3,
  max: 3,
  handle(r, ctx): Writer {
    const groupId = r.string() ?? ''
    // A null topic list asks for every committed offset; kafkajs always names its topics.
    const topics = r.array((r) => ({ name: r.string() ?? '', parts: r.array((r) => r.int32()) ?? [] })) ?? []
    const w = new Writer().int32(0)
    w.array(topics, (w, t) =>
      w.string(t.name).array(t.parts, (w, partition) => {
        const c = ctx.groups.committed(groupId, t.name, partition)
        w.int32(partition).int64(c.offset).string(c.metadata).int16(ERR.NONE)
      }),
    )
    return w.int16(ERR.NONE)
  },
}
