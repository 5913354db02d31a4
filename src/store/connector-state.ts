import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { ConnectorState } from '../sdk/index.js'
import type { Store } from './store.js'

/**
 * The lease owner id of this process when the gateway has no instance id to give: host, pid and a
 * random suffix, so a restarted process never mistakes its predecessor's leases for its own.
 */
export const PROCESS_OWNER = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`

/** This incarnation of the process: a restart (even with the same pid, as in a container) gets a new one. */
const INCARNATION = `${process.pid}:${randomBytes(3).toString('hex')}`

/** The lease owner id of this process in a cluster: the instance id, then this incarnation. */
export function leaseOwner(instanceId: string): string {
  return `${instanceId}:${INCARNATION}`
}

/**
 * A connector's view of the store: values, leases and compare-and-set rows under `scope` (the
 * gateway uses `<trigger kind>:<function>`), leases recorded with `owner` as their holder.
 */
export function connectorState(store: Store, scope: string, owner: string = PROCESS_OWNER): ConnectorState {
  const k = (key: string) => `${scope}:${key}`
  return {
    get: async <T>(key: string) => (await store.getState(scope, key)) as T | undefined,
    set: (key, value) => store.setState(scope, key, value),
    delete: (key) => store.deleteState(scope, key),
    claim: (key, ttlMs) => store.claim(k(key), ttlMs),
    acquireLease: (key, ttlMs) => store.acquireLease(k(key), owner, ttlMs),
    renewLease: (lease, ttlMs) => store.renewLease(lease, ttlMs),
    releaseLease: (lease) => store.releaseLease(lease),
    finishLease: (lease, retainMs) => store.finishLease(lease, retainMs),
    list: (prefix) => store.listVersioned(scope, prefix),
    compareAndSet: (key, value, version) => store.compareAndSet(scope, key, value, version),
  }
}
