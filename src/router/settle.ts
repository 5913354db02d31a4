/**
 * What happens to a batch's events after it ran: done, retried with backoff, or dead-lettered.
 * Contract: every item handed to `settle` or `deadLetterSoon` gets exactly one final outcome
 * (through `finish`): `done`, `dead` once its dead letter is durable, or `aborted` when the router
 * or the function closes first. A key stays locked until its retried items are back at the front
 * of the queue and its dead letters are durable; then the host's `onReady` starts batches again.
 * Nothing here rejects or throws out of a timer or promise callback.
 */
import { randomUUID } from 'node:crypto'
import { deadChannel, retryChannel } from '../channels.js'
import { toInfo, type ErrorInfo } from '../errors.js'
import { backoffDelay, type TriggerEvent } from '../sdk/index.js'
import type { Item } from './lane.js'
import { letterEvent } from './dead-letter.js'
import { checkedJson } from './event-check.js'
import { reasonOf } from './safe-json.js'
import { ABORTED, DONE, type FnLane, finish, guard, internal, type RouterHost } from './lane-state.js'

/** How often a failed dead-letter write is tried again: the event is not acked until it lands. */
const DEAD_LETTER_RETRY_MS = 1000

/**
 * Resolves finished items, schedules retries and writes dead letters. `errorOf` gives an item's
 * error, undefined when it succeeded.
 */
export function settle(h: RouterHost, l: FnLane, items: Item[], errorOf: (it: Item) => ErrorInfo | undefined): void {
  // Failed items by key; only made when an item failed.
  let byKey: Map<string, Item[]> | undefined
  let failed = false
  for (const it of items) it.handled = true
  for (const it of items) {
    const err = errorOf(it)
    if (err === undefined) {
      finish(l, it, DONE)
      continue
    }
    it.lastError = err
    failed = true
    if (it.key === undefined) retryOrDead(h, l, [it], undefined)
    else {
      byKey ??= new Map()
      const group = byKey.get(it.key)
      if (group) group.push(it)
      else byKey.set(it.key, [it])
    }
  }
  if (!failed) {
    // Lane.take puts a key's items side by side, and unlock ignores a key it already let go.
    let last: string | undefined
    for (const it of items) {
      if (it.key !== undefined && it.key !== last) l.lane.unlock(it.key)
      last = it.key
    }
    return
  }
  for (const key of new Set(items.map((it) => it.key))) {
    if (key === undefined) continue
    const group = byKey?.get(key)
    if (group) retryOrDead(h, l, group, key)
    else l.lane.unlock(key)
  }
}

function retryOrDead(h: RouterHost, l: FnLane, failed: Item[], key: string | undefined): void {
  const retry: Item[] = []
  const dead: Item[] = []
  for (const it of failed) {
    const err = it.lastError as ErrorInfo
    if (!err.retriable || it.attempts >= l.fn.retry.maxAttempts) dead.push(it)
    else if (h.closing() || l.closing) finish(l, it, ABORTED)
    else retry.push(it)
  }
  // deadLetter never rejects.
  const deadDone = Promise.all(dead.map((it) => deadLetter(h, l, it)))
  if (retry.length === 0) {
    // The key's next events wait for this unlock: pump, or they wait for an unrelated event.
    if (key !== undefined)
      void deadDone.then(() =>
        guard(h, l, 'unlocking a key', () => {
          l.lane.unlock(key)
          h.onReady(l)
        }),
      )
    return
  }
  const attempts = Math.max(...retry.map((it) => it.attempts))
  const delayMs = backoffDelay(l.fn.retry, attempts)
  l.stats.retries += retry.length
  if (retryChannel.hasSubscribers) {
    for (const it of retry) {
      retryChannel.publish({
        gateway: h.opts.gateway,
        function: l.fn.name,
        eventId: it.event.id,
        attempt: it.attempts,
        delayMs,
        error: it.lastError as ErrorInfo,
      })
    }
  }
  const timer = setTimeout(() => {
    l.retryTimers.delete(timer)
    void deadDone.then(() =>
      guard(h, l, 'queueing a retry', () => {
        if (h.closing() || l.closing) {
          for (const it of retry) finish(l, it, ABORTED)
          return
        }
        for (let i = retry.length - 1; i >= 0; i--) l.lane.push(retry[i] as Item, true)
        if (key !== undefined) l.lane.unlock(key)
        h.onReady(l)
      }),
    )
  }, delayMs)
  l.retryTimers.set(timer, retry)
}

/** Dead-letters an item from a synchronous path (admission): its outcome resolves later. */
export function deadLetterSoon(h: RouterHost, l: FnLane, it: Item): void {
  it.handled = true
  void deadLetter(h, l, it)
}

/**
 * Writes the item's dead letter and resolves its outcome `dead` once it is durable. Never
 * rejects: a failed write is retried (the event is not acked until it lands) until shutdown,
 * which answers it `aborted`.
 */
async function deadLetter(h: RouterHost, l: FnLane, it: Item): Promise<void> {
  const error: ErrorInfo = it.lastError ?? { code: 'SLUICE_ERR_INTERNAL', message: 'dead-lettered without an error', retriable: false }
  let event: TriggerEvent
  try {
    event = letterEvent(it.event, it.json === '' ? undefined : checkedJson(it))
  } catch (e) {
    internal(h, l, 'building a dead letter', e)
    event = {
      id: typeof it.event?.id === 'string' ? it.event.id : '',
      source: '',
      time: new Date(it.firstAttemptAt).toISOString(),
      body: null,
      meta: { bodyDropped: reasonOf(e) },
    }
  }
  // One id for every try: a write that landed although its answer was lost (the store's
  // connection broke) is not written twice by the retry.
  const letterId = randomUUID()
  for (;;) {
    let id: string
    try {
      id = await h.opts.store.putDeadLetter({
        id: letterId,
        function: l.fn.name,
        event,
        error,
        attempts: it.attempts,
        firstAttemptAt: new Date(it.firstAttemptAt).toISOString(),
        failedAt: new Date().toISOString(),
      })
    } catch (e) {
      // Not durable, so not acknowledged: keep trying; shutdown gives up and leaves it at the source.
      guard(h, l, 'logging', () =>
        h.opts.log.error({ function: l.fn.name, eventId: event.id, err: toInfo(e, 'SLUICE_ERR_STORE_OPEN') }, 'dead-letter write failed; retrying'),
      )
      if (h.closing()) {
        guard(h, l, 'answering an event', () => finish(l, it, ABORTED))
        return
      }
      await new Promise((r) => setTimeout(r, DEAD_LETTER_RETRY_MS))
      continue
    }
    guard(h, l, 'logging a dead letter', () => {
      h.opts.log.warn({ function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, err: error }, 'event dead-lettered')
      if (deadChannel.hasSubscribers) {
        deadChannel.publish({ gateway: h.opts.gateway, function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, error })
      }
    })
    guard(h, l, 'answering an event', () => finish(l, it, { status: 'dead', deadLetterId: id, error }))
    return
  }
}
