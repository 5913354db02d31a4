/**
 * The start-time check that no other live process uses this gateway's instance id (issue 8). Two
 * processes with one id share MQTT client ids, the Event Hubs owner id and the lease owner prefix,
 * so each takes the other's sessions and ticks. Before anything consumes, the gateway reads the id's
 * registry row: when another incarnation beat there within instance.expiryMs and has not stopped,
 * it waits that heartbeat out. A predecessor that is gone (kill -9, a crash, a restarted pod of the
 * same name) never beats again, so the wait ends once its heartbeat expires and the gateway starts;
 * one that beats again while we wait is live, and the start fails with
 * SLUICE_ERR_INSTANCE_DUPLICATE_ID. A predecessor that is stopping (SIGTERM, draining) is waited for
 * until it records itself stopped, for at most STOPPING_WAIT_MS.
 */
import { SluiceError, toInfo } from '../errors.js'
import type { Logger } from '../sdk/index.js'
import type { InstanceRow, Store } from '../store/store.js'
import type { InstanceSettings } from './identity.js'
import type { InstanceReport } from './types.js'

/** How long a predecessor that is draining after SIGTERM may keep beating (two 30 s stop steps). */
export const STOPPING_WAIT_MS = 60_000
/** Rows silent this long are deleted when the registry is read (as in member.ts). */
const FORGET_MS = 24 * 3600_000
/** Polls at least this often, so a wait shows progress in the log about once a second. */
const MAX_POLL_MS = 1000

/** The other process last seen holding the id. `heartbeatAt` is absent when only its incarnation is known. */
export interface Holder {
  incarnation: string
  heartbeatAt?: string
  ageMs: number
  state?: InstanceReport['state']
  host?: string
  pid?: number
}

export interface ClaimDeps {
  store: Store
  settings: InstanceSettings
  incarnation: string
  log: Logger
  /** True once the gateway stops: the wait ends without a verdict. */
  stopped(): boolean
}

/** What the wait found: the holder it waited out (its later writes are not a duplicate), if any. */
export interface WaitResult {
  waitedOut?: string
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref())

function holderOf(row: InstanceRow): Holder {
  const doc = row.doc as Partial<InstanceReport>
  return {
    incarnation: row.incarnation,
    heartbeatAt: row.heartbeatAt,
    ageMs: row.ageMs,
    ...(doc.state ? { state: doc.state } : {}),
    ...(typeof doc.host === 'string' ? { host: doc.host } : {}),
    ...(typeof doc.pid === 'number' ? { pid: doc.pid } : {}),
  }
}

/** Log fields describing the holder. */
function fields(h: Holder): Record<string, unknown> {
  return {
    other: {
      incarnation: h.incarnation,
      ...(h.host ? { host: h.host } : {}),
      ...(h.pid !== undefined ? { pid: h.pid } : {}),
      ...(h.state ? { state: h.state } : {}),
    },
    otherHeartbeatMsAgo: h.ageMs,
  }
}

async function readRow(d: ClaimDeps): Promise<InstanceRow | undefined> {
  return (await d.store.listInstances(FORGET_MS)).find((r) => r.id === d.settings.id)
}

/** True when `row` is a holding by another process that may still be alive. */
function heldBy(row: InstanceRow, d: ClaimDeps): boolean {
  if (row.incarnation === d.incarnation) return false
  return (row.doc as Partial<InstanceReport>).state !== 'stopped' && row.ageMs < d.settings.expiryMs
}

/** The coded error a start refuses with. */
export function duplicateIdError(settings: InstanceSettings, h: Holder): SluiceError {
  const who = [h.host ? `host ${h.host}` : '', h.pid !== undefined ? `pid ${h.pid}` : ''].filter(Boolean).join(', ')
  const from =
    settings.source === 'host'
      ? ` (the id is this host's name: neither instance.id nor SLUICE_INSTANCE_ID is set)`
      : settings.source === 'env'
        ? ' (from SLUICE_INSTANCE_ID)'
        : ' (from instance.id)'
  return new SluiceError(
    'SLUICE_ERR_INSTANCE_DUPLICATE_ID',
    `instance id ${settings.id}${from} is in use by another live gateway process${who ? ` (${who})` : ''} that kept heartbeating while this one waited: ` +
      `two processes with one id take each other's MQTT sessions, Event Hubs partitions and timer leases. ` +
      `Give every gateway its own id: set instance.id in the configuration or the SLUICE_INSTANCE_ID environment variable. Nothing was consumed`,
    { context: { path: 'instance.id', instance: settings.id, ...(h.host ? { otherHost: h.host } : {}), ...(h.pid !== undefined ? { otherPid: h.pid } : {}) } },
  )
}

/**
 * Waits until no other live process holds the instance id; throws SLUICE_ERR_INSTANCE_DUPLICATE_ID
 * when the holder beats again meanwhile. `raced`: a process whose fresh row our own first
 * heartbeat just overwrote (it registered between our check and our write), so every row of its
 * incarnation read from now on is a new beat. A store that cannot be read is logged, not thrown:
 * the check then ends when the holder's heartbeat would have expired (or at once, with none seen).
 */
export async function waitForInstanceId(d: ClaimDeps, raced?: Holder): Promise<WaitResult> {
  const { settings, log } = d
  let holder: Holder
  if (raced) holder = raced
  else {
    let row: InstanceRow | undefined
    try {
      row = await readRow(d)
    } catch (e) {
      const err = toInfo(e, 'SLUICE_ERR_STORE_DOWN')
      log.warn(
        { err: { code: err.code, message: err.message } },
        'cannot read the cluster registry to check that no other process uses this instance id; starting without the check',
      )
      return {}
    }
    // A stopped or expired holding is free; its incarnation's row is what our first write replaces.
    if (!row) return {}
    if (!heldBy(row, d)) return row.incarnation !== d.incarnation ? { waitedOut: row.incarnation } : {}
    holder = holderOf(row)
  }
  const started = Date.now()
  let deadline = started + Math.max(0, settings.expiryMs - holder.ageMs)
  const stoppingUntil = started + STOPPING_WAIT_MS
  log.warn(
    { ...fields(holder), waitMs: deadline - started, expiryMs: settings.expiryMs },
    raced
      ? `instance id ${settings.id} was registered by another process at the same moment as this one: waiting up to ${deadline - started} ms for its next heartbeat (none: it is gone and this one starts; one: this start is refused)`
      : holder.state === 'stopping'
        ? `instance id ${settings.id} is held by a process that is stopping: waiting until it has stopped`
        : `instance id ${settings.id} is held by another process that heartbeat ${holder.ageMs} ms ago: waiting up to ${deadline - started} ms for its heartbeat to expire (a restart after a crash starts then; a live process with this id keeps beating and this start is refused)`,
  )
  let lastFailure = 0
  for (;;) {
    if (d.stopped()) return { waitedOut: holder.incarnation }
    const now = Date.now()
    if (now >= deadline) {
      log.info(
        { ...fields(holder), waitedMs: now - started },
        `the previous holder of instance id ${settings.id} stopped heartbeating (its heartbeat expired): starting`,
      )
      return { waitedOut: holder.incarnation }
    }
    await sleep(Math.min(deadline - now, settings.heartbeatMs, MAX_POLL_MS))
    let row: InstanceRow | undefined
    try {
      row = await readRow(d)
    } catch (e) {
      if (Date.now() - lastFailure > 10_000) {
        lastFailure = Date.now()
        const err = toInfo(e, 'SLUICE_ERR_STORE_DOWN')
        log.warn({ err: { code: err.code, message: err.message } }, 'cannot read the cluster registry while waiting for the instance id; waiting on')
      }
      continue
    }
    // Gone, or our own write (after a race): nothing new from the holder.
    if (!row || row.incarnation === d.incarnation) {
      log.info({ ...fields(holder), waitedMs: Date.now() - started, remainingMs: Math.max(0, deadline - Date.now()) }, 'waiting for the instance id')
      continue
    }
    const current = holderOf(row)
    const beatAgain = current.incarnation !== holder.incarnation || current.heartbeatAt !== holder.heartbeatAt
    if (current.state === 'stopped') {
      log.info({ ...fields(current), waitedMs: Date.now() - started }, `the previous holder of instance id ${settings.id} has stopped: starting`)
      return { waitedOut: current.incarnation }
    }
    if (current.ageMs >= settings.expiryMs) {
      log.info(
        { ...fields(current), waitedMs: Date.now() - started },
        `the previous holder of instance id ${settings.id} stopped heartbeating (its heartbeat expired): starting`,
      )
      return { waitedOut: current.incarnation }
    }
    if (beatAgain) {
      if (current.state === 'stopping' && current.incarnation === holder.incarnation && Date.now() < stoppingUntil) {
        // Draining after SIGTERM: it beats until its connectors have stopped, then records itself stopped.
        holder = current
        deadline = Date.now() + Math.max(0, settings.expiryMs - current.ageMs)
      } else {
        const err = duplicateIdError(settings, current)
        log.error({ code: err.code, ...fields(current), waitedMs: Date.now() - started }, err.message)
        throw err
      }
    }
    log.info({ ...fields(holder), waitedMs: Date.now() - started, remainingMs: Math.max(0, deadline - Date.now()) }, 'waiting for the instance id')
  }
}
