/** The cluster start warnings (src/cluster/warnings.ts) for the set-ups several live instances break. */
import { describe, expect, it } from 'vitest'
import type { FunctionConfig } from '../../src/config/schema.js'
import { clusterWarnings, unsharedTriggers } from '../../src/cluster/warnings.js'

const fn = (name: string, kind: string, options: Record<string, unknown>, orderKey = 'source'): FunctionConfig =>
  ({ name, orderKey, trigger: { kind, options, connection: 'c' } }) as unknown as FunctionConfig

const config = {
  functions: {
    plain: fn('plain', 'mqtt', { connection: 'c', topic: 't/+' }),
    shared: fn('shared', 'mqtt', { connection: 'c', topic: 's/+', share: 'g' }),
    unordered: fn('unordered', 'mqtt', { connection: 'c', topic: 'u/+', share: 'g' }, 'none'),
    queue: fn('queue', 'amqp', { connection: 'q', queue: 'jobs' }),
    sac: fn('sac', 'amqp', { connection: 'q', queue: 'ordered', declare: { arguments: { 'x-single-active-consumer': true } } }),
    stream: fn('stream', 'kafka', { connection: 'k', topic: 'x' }),
  },
}

describe('cluster warnings', () => {
  it('are empty while this instance is the only live one', () => {
    expect(clusterWarnings(config, { unshared: unsharedTriggers(config) }, [])).toEqual([])
  })

  it('name unshared MQTT triggers another live instance runs too, and functions whose order the source cannot keep', () => {
    const self = { unshared: unsharedTriggers(config) }
    expect(self.unshared).toEqual([{ function: 'plain', connection: 'c', topic: 't/+' }])
    const w = clusterWarnings(config, self, [
      { id: 'other', report: { unshared: [{ function: 'plain', connection: 'c', topic: 't/+' }] } },
      { id: 'third', report: { unshared: [] } },
    ])
    expect(w.map((x) => `${x.code}:${x.function}`)).toEqual([
      'SLUICE_ERR_CLUSTER_MQTT_UNSHARED:plain',
      'SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT:shared',
      'SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT:queue',
    ])
    expect(w[0]?.message).toMatch(/this instance and other run its MQTT trigger on t\/\+ without share/)
    expect(w[1]?.message).toMatch(/function shared relies on per-key order .* 3 instances are live/)
    expect(w[2]?.docs).toBe('docs/operations.md#order-with-several-instances')
  })

  it('leave an unshared trigger alone when no other instance runs it', () => {
    const w = clusterWarnings(config, { unshared: unsharedTriggers(config) }, [
      { id: 'other', report: { unshared: [{ function: 'plain', connection: 'c', topic: 'other/+' }] } },
    ])
    expect(w.map((x) => x.code)).not.toContain('SLUICE_ERR_CLUSTER_MQTT_UNSHARED')
  })
})
