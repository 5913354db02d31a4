/**
 * Named diagnostics channels (node:diagnostics_channel). The router, scheduler and sandbox publish
 * here; metrics, the dashboard and tests subscribe. Publishing costs nothing without subscribers.
 */
import { channel } from 'node:diagnostics_channel'
import type { ErrorInfo } from './errors.js'

export const CHANNELS = {
  /** One invocation finished (a batch, an HTTP call or an admin invoke). */
  invocation: 'sluice:router:invocation',
  /** An event is scheduled for another attempt. */
  retry: 'sluice:router:retry',
  /** An event was written to the dead-letter store. */
  dead: 'sluice:router:dead',
  /** Instances of a function changed (start, stop, lost). */
  instance: 'sluice:scheduler:instance',
  /** A worker host went up or down. */
  host: 'sluice:sandbox:host',
  /** A timer tick was skipped because the previous run still went on. */
  timerSkip: 'sluice:timer:skip',
} as const

export interface InvocationMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  function: string
  invocationId: string
  kind: 'batch' | 'sync'
  size: number
  ok: boolean
  failed: number
  durationMs: number
  /** Time between the batch being ready and an instance taking it. */
  waitMs: number
  coldStart: boolean
  error?: ErrorInfo
}

export interface RetryMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  function: string
  eventId: string
  attempt: number
  delayMs: number
  error: ErrorInfo
}

export interface DeadMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  function: string
  eventId: string
  deadLetterId: string
  attempts: number
  error: ErrorInfo
}

export interface InstanceMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  function: string
  action: 'start' | 'stop' | 'lost'
  instances: number
  hostId: number
  /** Cold start: instance creation time in the host. */
  ms?: number
}

export interface HostMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  host: number
  action: 'up' | 'down'
  lostInstances?: number
}

export interface TimerSkipMessage {
  /** Which gateway in this process published it (several run side by side in tests). */
  gateway: number
  function: string
  scheduledAt: string
}

export const invocationChannel = channel(CHANNELS.invocation)
export const retryChannel = channel(CHANNELS.retry)
export const deadChannel = channel(CHANNELS.dead)
export const instanceChannel = channel(CHANNELS.instance)
export const hostChannel = channel(CHANNELS.host)
export const timerSkipChannel = channel(CHANNELS.timerSkip)
