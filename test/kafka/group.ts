/**
 * The test broker's group coordinator: the classic (eager) consumer-group protocol of
 * KIP-62/Kafka 2.x with one coordinator. States Empty -> PreparingRebalance (waiting for every
 * member to rejoin, up to the largest rebalance timeout) -> CompletingRebalance (waiting for the
 * leader's SyncGroup) -> Stable. A join, a leave or an expired session starts a rebalance; members
 * learn of it from Heartbeat (REBALANCE_IN_PROGRESS). Offsets are committed per group with the
 * generation check Kafka applies. Not covered: static membership, the MEMBER_ID_REQUIRED join
 * handshake (JoinGroup v4+), the initial rebalance delay, offset retention.
 */
import { randomUUID } from 'node:crypto'
import { nextSeq } from './log.js'
import { ERR } from './protocol.js'

export interface Protocol {
  name: string
  metadata: Buffer
}

export interface JoinRequest {
  memberId: string
  clientId: string
  sessionTimeoutMs: number
  rebalanceTimeoutMs: number
  protocolType: string
  protocols: Protocol[]
}

export interface JoinResult {
  error: number
  generation: number
  protocol: string
  leader: string
  memberId: string
  members: Array<{ memberId: string; metadata: Buffer }>
}

export interface SyncResult {
  error: number
  assignment: Buffer
}

/** One accepted offset commit, kept for test assertions. */
export interface CommitRecord {
  time: number
  /** The commit's place in the broker's event order (see nextSeq in log.ts). */
  seq: number
  group: string
  memberId: string
  generation: number
  topic: string
  partition: number
  offset: number
}

export interface OffsetEntry {
  topic: string
  partition: number
  offset: number
  metadata: string | null
}

/** A generation's assignment, from the moment it was handed out (Stable), for ownership checks. */
export interface GenerationRecord {
  seq: number
  group: string
  generation: number
  /** Member id -> the leader's assignment bytes (kafkajs MemberAssignment), empty when the group emptied. */
  assignments: Map<string, Buffer>
}

type State = 'Empty' | 'PreparingRebalance' | 'CompletingRebalance' | 'Stable'

interface Member {
  id: string
  clientId: string
  sessionTimeoutMs: number
  rebalanceTimeoutMs: number
  protocolType: string
  protocols: Protocol[]
  assignment: Buffer
  lastSeen: number
  joining: ((r: JoinResult) => void) | undefined
  syncing: ((r: SyncResult) => void) | undefined
}

interface Group {
  id: string
  state: State
  generation: number
  protocol: string
  leader: string
  members: Map<string, Member>
  joinTimer: NodeJS.Timeout | undefined
  offsets: Map<string, { offset: number; metadata: string | null }>
}

const EMPTY = Buffer.alloc(0)
const offsetKey = (topic: string, partition: number) => `${topic}\u0000${partition}`

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>()
  /** Every accepted commit in order (tests check that no commit passed unfinished work). */
  readonly commits: CommitRecord[] = []
  /** Every generation's assignment in order, and every time a group emptied. */
  readonly generations: GenerationRecord[] = []
  private readonly sweep: NodeJS.Timeout

  constructor(private readonly log: (msg: string) => void = () => undefined) {
    this.sweep = setInterval(() => this.expireSessions(), 50)
    this.sweep.unref()
  }

  private group(id: string): Group {
    let g = this.groups.get(id)
    if (!g) {
      g = { id, state: 'Empty', generation: 0, protocol: '', leader: '', members: new Map(), joinTimer: undefined, offsets: new Map() }
      this.groups.set(id, g)
    }
    return g
  }

  join(groupId: string, req: JoinRequest): Promise<JoinResult> {
    const g = this.group(groupId)
    const fail = (error: number): Promise<JoinResult> => Promise.resolve({ error, generation: -1, protocol: '', leader: '', memberId: req.memberId, members: [] })
    if (groupId === '') return fail(ERR.INVALID_GROUP_ID)
    const others = [...g.members.values()].filter((m) => m.id !== req.memberId)
    const names = new Set(req.protocols.map((p) => p.name))
    if (req.protocols.length === 0 || others.some((m) => m.protocolType !== req.protocolType || !m.protocols.some((p) => names.has(p.name)))) {
      return fail(ERR.INCONSISTENT_GROUP_PROTOCOL)
    }
    let m: Member | undefined
    if (req.memberId === '') {
      m = { id: `${req.clientId}-${randomUUID()}`, clientId: req.clientId, sessionTimeoutMs: 0, rebalanceTimeoutMs: 0, protocolType: '', protocols: [], assignment: EMPTY, lastSeen: 0, joining: undefined, syncing: undefined }
      g.members.set(m.id, m)
      this.log(`group ${groupId}: ${m.id} joins`)
    } else {
      m = g.members.get(req.memberId)
      if (!m) return fail(ERR.UNKNOWN_MEMBER_ID)
    }
    Object.assign(m, { sessionTimeoutMs: req.sessionTimeoutMs, rebalanceTimeoutMs: req.rebalanceTimeoutMs, protocolType: req.protocolType, protocols: req.protocols, lastSeen: Date.now() })
    const member = m
    return new Promise<JoinResult>((resolve) => {
      // A second JoinGroup from the same member replaces the first (its connection is gone).
      member.joining?.({ error: ERR.REBALANCE_IN_PROGRESS, generation: -1, protocol: '', leader: '', memberId: member.id, members: [] })
      member.joining = resolve
      if (g.state === 'PreparingRebalance') this.tryCompleteJoin(g)
      else this.prepareRebalance(g)
    })
  }

  sync(groupId: string, generation: number, memberId: string, assignments: Array<{ memberId: string; assignment: Buffer }>): Promise<SyncResult> {
    const g = this.group(groupId)
    const m = g.members.get(memberId)
    if (!m) return Promise.resolve({ error: ERR.UNKNOWN_MEMBER_ID, assignment: EMPTY })
    if (generation !== g.generation) return Promise.resolve({ error: ERR.ILLEGAL_GENERATION, assignment: EMPTY })
    m.lastSeen = Date.now()
    if (g.state === 'PreparingRebalance') return Promise.resolve({ error: ERR.REBALANCE_IN_PROGRESS, assignment: EMPTY })
    if (g.state === 'Stable') return Promise.resolve({ error: ERR.NONE, assignment: m.assignment })
    return new Promise<SyncResult>((resolve) => {
      m.syncing = resolve
      if (memberId !== g.leader) return
      for (const x of g.members.values()) x.assignment = assignments.find((a) => a.memberId === x.id)?.assignment ?? EMPTY
      g.state = 'Stable'
      this.generations.push({ seq: nextSeq(), group: groupId, generation: g.generation, assignments: new Map([...g.members.values()].map((x) => [x.id, x.assignment])) })
      this.log(`group ${groupId}: generation ${g.generation} stable with ${g.members.size} member(s)`)
      for (const x of g.members.values()) {
        x.syncing?.({ error: ERR.NONE, assignment: x.assignment })
        x.syncing = undefined
      }
    })
  }

  heartbeat(groupId: string, generation: number, memberId: string): number {
    const g = this.group(groupId)
    const m = g.members.get(memberId)
    if (!m) return ERR.UNKNOWN_MEMBER_ID
    m.lastSeen = Date.now()
    if (g.state === 'PreparingRebalance') return ERR.REBALANCE_IN_PROGRESS
    if (generation !== g.generation) return ERR.ILLEGAL_GENERATION
    if (g.state === 'CompletingRebalance') return ERR.REBALANCE_IN_PROGRESS
    return ERR.NONE
  }

  leave(groupId: string, memberId: string): number {
    const g = this.group(groupId)
    const m = g.members.get(memberId)
    if (!m) return ERR.UNKNOWN_MEMBER_ID
    this.log(`group ${groupId}: ${memberId} leaves`)
    this.removeMember(g, m)
    return ERR.NONE
  }

  /** OffsetCommit: one error for every partition of the request, as Kafka checks per request. */
  commit(groupId: string, generation: number, memberId: string, offsets: OffsetEntry[]): number {
    const g = this.group(groupId)
    if (generation < 0 && memberId === '') {
      // A "simple" commit from outside the group protocol: only while nobody is a member.
      if (g.members.size > 0) return ERR.UNKNOWN_MEMBER_ID
    } else {
      const m = g.members.get(memberId)
      if (!m) return ERR.UNKNOWN_MEMBER_ID
      if (generation !== g.generation) return ERR.ILLEGAL_GENERATION
      // Kafka accepts commits of the current generation while PreparingRebalance (members
      // commit before they rejoin), but not while the new assignment is being handed out.
      if (g.state === 'CompletingRebalance') return ERR.REBALANCE_IN_PROGRESS
      m.lastSeen = Date.now()
    }
    const time = Date.now()
    const seq = nextSeq()
    for (const o of offsets) {
      g.offsets.set(offsetKey(o.topic, o.partition), { offset: o.offset, metadata: o.metadata })
      this.commits.push({ time, seq, group: groupId, memberId, generation, topic: o.topic, partition: o.partition, offset: o.offset })
    }
    return ERR.NONE
  }

  /** The committed offset (-1 when none). */
  committed(groupId: string, topic: string, partition: number): { offset: number; metadata: string | null } {
    return this.groups.get(groupId)?.offsets.get(offsetKey(topic, partition)) ?? { offset: -1, metadata: null }
  }

  /** Group state for tests. */
  describe(groupId: string): { state: State; generation: number; members: string[]; leader: string } {
    const g = this.group(groupId)
    return { state: g.state, generation: g.generation, members: [...g.members.keys()], leader: g.leader }
  }

  /**
   * The coordinator "fails over" (broker restart): members and pending requests are dropped, so
   * clients rejoin after UNKNOWN_MEMBER_ID; committed offsets and generation numbers are kept.
   */
  reset(): void {
    for (const g of this.groups.values()) {
      clearTimeout(g.joinTimer)
      g.joinTimer = undefined
      g.members.clear()
      g.leader = ''
      if (g.state !== 'Empty') {
        g.generation++
        this.generations.push({ seq: nextSeq(), group: g.id, generation: g.generation, assignments: new Map() })
      }
      g.state = 'Empty'
    }
  }

  close(): void {
    clearInterval(this.sweep)
    this.reset()
  }

  private prepareRebalance(g: Group): void {
    // Members waiting for the old generation's assignment must rejoin.
    for (const m of g.members.values()) {
      m.syncing?.({ error: ERR.REBALANCE_IN_PROGRESS, assignment: EMPTY })
      m.syncing = undefined
    }
    g.state = 'PreparingRebalance'
    clearTimeout(g.joinTimer)
    const timeout = Math.max(0, ...[...g.members.values()].map((m) => m.rebalanceTimeoutMs))
    g.joinTimer = setTimeout(() => this.completeJoin(g), timeout)
    this.log(`group ${g.id}: rebalancing (generation ${g.generation})`)
    this.tryCompleteJoin(g)
  }

  private tryCompleteJoin(g: Group): void {
    if (g.state === 'PreparingRebalance' && [...g.members.values()].every((m) => m.joining)) this.completeJoin(g)
  }

  private completeJoin(g: Group): void {
    clearTimeout(g.joinTimer)
    g.joinTimer = undefined
    for (const m of [...g.members.values()]) {
      if (!m.joining) {
        this.log(`group ${g.id}: ${m.id} did not rejoin in time`)
        g.members.delete(m.id)
      }
    }
    g.generation++
    if (g.members.size === 0) {
      g.state = 'Empty'
      g.leader = ''
      this.generations.push({ seq: nextSeq(), group: g.id, generation: g.generation, assignments: new Map() })
      return
    }
    const members = [...g.members.values()]
    const first = members[0] as Member
    g.protocol = first.protocols.find((p) => members.every((m) => m.protocols.some((q) => q.name === p.name)))?.name ?? ''
    if (!g.members.has(g.leader)) g.leader = first.id
    g.state = 'CompletingRebalance'
    const all = members.map((m) => ({ memberId: m.id, metadata: m.protocols.find((p) => p.name === g.protocol)?.metadata ?? EMPTY }))
    const now = Date.now()
    for (const m of members) {
      const reply = m.joining as (r: JoinResult) => void
      m.joining = undefined
      m.lastSeen = now
      reply({ error: ERR.NONE, generation: g.generation, protocol: g.protocol, leader: g.leader, memberId: m.id, members: m.id === g.leader ? all : [] })
    }
  }

  private removeMember(g: Group, m: Member): void {
    m.joining?.({ error: ERR.UNKNOWN_MEMBER_ID, generation: -1, protocol: '', leader: '', memberId: m.id, members: [] })
    m.syncing?.({ error: ERR.UNKNOWN_MEMBER_ID, assignment: EMPTY })
    g.members.delete(m.id)
    if (g.members.size === 0) {
      clearTimeout(g.joinTimer)
      g.joinTimer = undefined
      if (g.state !== 'Empty') g.generation++
      this.generations.push({ seq: nextSeq(), group: g.id, generation: g.generation, assignments: new Map() })
      g.state = 'Empty'
      g.leader = ''
      return
    }
    if (g.state === 'PreparingRebalance') this.tryCompleteJoin(g)
    else this.prepareRebalance(g)
  }

  private expireSessions(): void {
    const now = Date.now()
    for (const g of this.groups.values()) {
      for (const m of [...g.members.values()]) {
        // A member parked in JoinGroup is waiting on the coordinator, not silent.
        if (!m.joining && now - m.lastSeen > m.sessionTimeoutMs) {
          this.log(`group ${g.id}: session of ${m.id} expired`)
          this.removeMember(g, m)
        }
      }
    }
  }
}
