import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import { AckWindow } from './acks.js'
import type { Counted } from './attempts.js'

/** One connection and its consuming channel. Delivery tags, acks and the consumer belong to it. */
export interface Link {
  gen: number
  model: ChannelModel
  ch: Channel
  window: AckWindow
  consumerTag: string | undefined
  /** Consumer changes (consume/cancel) run one after another. */
  sync: Promise<void>
  /** Set once, when the channel or connection closes (or stop closes it): nothing is sent after. */
  closed: boolean
  flushQueued: boolean
  /** Deliveries waiting for their outcome. */
  inflight: Map<number, InFlight>
  /** First deliveries of this tick, handed to the router together (see delivery.ts). */
  group: InFlight[]
  dlx: Promise<ConfirmChannel> | undefined
  /** Resolves when the link closes. */
  down: Promise<void>
  setDown: () => void
}

/** A message handed to (or about to go to) the router, with its delivery count. */
export interface InFlight {
  msg: ConsumeMessage
  counted: Counted
}

/** A link on a fresh channel, not consuming yet. */
export function newLink(gen: number, model: ChannelModel, ch: Channel): Link {
  let setDown = () => {}
  const down = new Promise<void>((r) => (setDown = r))
  return {
    gen,
    model,
    ch,
    window: new AckWindow(),
    consumerTag: undefined,
    sync: Promise.resolve(),
    closed: false,
    flushQueued: false,
    inflight: new Map(),
    group: [],
    dlx: undefined,
    down,
    setDown,
  }
}

/** Marks the link closed, once; false when it already was. */
export function markDown(link: Link): boolean {
  if (link.closed) return false
  link.closed = true
  link.setDown()
  return true
}
