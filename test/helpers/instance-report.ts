import type { InstanceReport } from '../../src/cluster/types.js'

/**
 * The registry document of a process that is not one of the test's gateways (host h, pid 1, up,
 * no work), with `fields` over it: what a test writes with `store.heartbeatInstance` to stand for
 * another instance.
 */
export function foreignInstance(fields: Partial<InstanceReport> = {}): InstanceReport {
  return {
    version: '0.0.1',
    host: 'h',
    pid: 1,
    startedAt: new Date().toISOString(),
    state: 'up',
    connections: [],
    backlog: 0,
    inflight: 0,
    sessions: [],
    unshared: [],
    ...fields,
  }
}
