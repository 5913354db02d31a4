/**
 * The APIs the test broker serves, one exact version each (kafkajs picks the highest version both
 * sides support, so advertising one version pins what kafkajs 2.2.4 sends), ApiVersions aside.
 */
import { fetch, listOffsets, produce } from './api-data.js'
import { heartbeat, joinGroup, leaveGroup, offsetCommit, offsetFetch, syncGroup } from './api-group.js'
import { apiVersions, findCoordinator, metadata } from './api-meta.js'
import type { GroupCoordinator } from './group.js'
import type { TopicStore } from './log.js'
import type { Reader, Writer } from './protocol.js'

export interface BrokerContext {
  store: TopicStore
  groups: GroupCoordinator
  host: string
  port: number
  autoCreateTopics: boolean
  defaultPartitions: number
  /** Aborted when the broker stops: long polls answer at once. */
  stopped: AbortSignal
  log(msg: string): void
}

export interface ApiDef {
  key: number
  min: number
  max: number
  /** Decodes the request body and returns the response body (null: no response, acks 0). */
  handle(r: Reader, ctx: BrokerContext, version: number, clientId: string): Writer | null | Promise<Writer | null>
}

const served: ApiDef[] = [produce, fetch, listOffsets, metadata, offsetCommit, offsetFetch, findCoordinator, joinGroup, heartbeat, leaveGroup, syncGroup]

export const APIS: ReadonlyMap<number, ApiDef> = new Map([...served, apiVersions(served)].map((a) => [a.key, a]))
