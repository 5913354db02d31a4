/** Which id an instance takes (config, SLUICE_INSTANCE_ID, host name) and the heartbeat bounds. */
import { hostname } from 'node:os'
import { describe, expect, it } from 'vitest'
import { resolveInstance } from '../../src/cluster/identity.js'

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f()
    return undefined
  } catch (e) {
    return (e as { code?: string }).code
  }
}

describe('instance identity', () => {
  it('takes instance.id, else SLUICE_INSTANCE_ID, else the host name, with the default heartbeat', () => {
    expect(resolveInstance({ instance: { id: 'cfg-1', heartbeatMs: 2000, expiryMs: 10000 } }, { SLUICE_INSTANCE_ID: 'env-1' })).toEqual({
      id: 'cfg-1',
      source: 'config',
      heartbeatMs: 2000,
      expiryMs: 10000,
    })
    expect(resolveInstance({}, { SLUICE_INSTANCE_ID: ' sluice-2 ' })).toEqual({ id: 'sluice-2', source: 'env', heartbeatMs: 2000, expiryMs: 10000 })
    expect(resolveInstance({}, {})).toMatchObject({ id: hostname(), source: 'host' })
    expect(resolveInstance({}, { SLUICE_INSTANCE_ID: '' }).id).toBe(hostname())
  })

  it('refuses an expiry shorter than three heartbeats and an invalid SLUICE_INSTANCE_ID', () => {
    expect(codeOf(() => resolveInstance({ instance: { heartbeatMs: 1000, expiryMs: 2999 } }, {}))).toBe('SLUICE_ERR_INSTANCE_CONFIG')
    expect(codeOf(() => resolveInstance({ instance: { heartbeatMs: 1000, expiryMs: 3000 } }, {}))).toBeUndefined()
    expect(codeOf(() => resolveInstance({}, { SLUICE_INSTANCE_ID: 'pod/0' }))).toBe('SLUICE_ERR_INSTANCE_CONFIG')
  })
})
