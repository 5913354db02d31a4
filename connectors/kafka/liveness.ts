/**
 * Start retry and liveness of the Kafka trigger.
 *
 * - `Liveness`: tells a quiet consumer from a lost cluster or a hung consumer (below).
 * - `ClusterLiveness`: Liveness wired to a kafkajs cluster and the trigger's health: a probe admin
 *   (one request, no retries), health down with the mapped error while no broker answers, up at
 *   the next contact, and `onStuck` when the cluster answers but the consumer stays silent.
 * - `startWithRetry`: runs the consumer until the first assignment, retrying while no broker is
 *   reachable, bounded by startTimeoutMs; rejects with SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION (no
 *   broker answered) or SLUICE_ERR_CONNECTOR_START (reached, but did not join in time).
 */
import type { Admin, Kafka } from 'kafkajs'
import { backoffDelay, SluiceError, type ConnectorContext, type Logger } from '../../src/sdk/index.js'
import { kafkaError, type KafkaErrorContext } from './client.js'
import type { KafkaTriggerOptions } from './options.js'

/** Backoff of the connector's own consumer restarts (kafkajs restarts retriable crashes itself). */
export const RESTART_BACKOFF = { backoff: 'exponential', initialDelayMs: 500, maxDelayMs: 30000 } as const

/**
 * Whether the trigger still hears from the cluster. kafkajs retries a lost broker for a long time
 * before its consumer crashes (and reports nothing meanwhile), so the trigger's health would stay
 * up through an outage. Every fetch, heartbeat, commit and join counts as contact; after
 * `staleMs` without one, `probe` (one metadata request, no retries) decides: when it fails the
 * trigger is reported down with its error, and the next contact reports it up again. When the
 * cluster answers but the consumer stays silent for `stuckMs` (kafkajs 2.2.4 can hang in a rejoin
 * after its group coordinator restarted), `onStuck` replaces the consumer.
 */
export interface LivenessOptions {
  staleMs: number
  stuckMs: number
  onStuck: () => void
  /** Resolves when a broker answers; rejects with the reason otherwise. */
  probe: () => Promise<void>
  onDown: (reason: unknown) => void
  onUp: () => void
}

export class Liveness {
  private last = Date.now()
  private down = false
  private probing = false
  private readonly timer: NodeJS.Timeout

  constructor(private readonly o: LivenessOptions) {
    this.timer = setInterval(() => this.check(), Math.min(1000, Math.max(100, o.staleMs / 4)))
    this.timer.unref()
  }

  /** A request of the consumer succeeded. */
  contact(): void {
    this.last = Date.now()
    if (this.down) {
      this.down = false
      this.o.onUp()
    }
  }

  private check(): void {
    if (this.probing || Date.now() - this.last < this.o.staleMs) return
    this.probing = true
    this.o
      .probe()
      .then(
        () => {
          // The cluster answers: the consumer is quiet (a long fetch), or stuck.
          if (Date.now() - this.last < this.o.stuckMs) return
          this.last = Date.now()
          this.o.onStuck()
        },
        (e: unknown) => {
          if (!this.down) {
            this.down = true
            this.o.onDown(e)
          }
        },
      )
      .finally(() => {
        this.probing = false
      })
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

export interface ClusterLivenessOptions {
  kafka: Kafka
  trigger: Pick<KafkaTriggerOptions, 'heartbeatIntervalMs' | 'maxWaitMs' | 'rebalanceTimeoutMs' | 'sessionTimeoutMs'>
  groupId: string
  context: KafkaErrorContext
  ctx: () => ConnectorContext | undefined
  /** The cluster answers but the consumer has been silent for stuckMs: replace it. */
  onStuck: () => void
}

/**
 * Liveness of one trigger's consumer (see the file header). Call `contact` on every fetch,
 * heartbeat, commit and join of the current consumer; `stop` ends the checks, `disconnect`
 * closes the probe's admin client (never rejects).
 */
export class ClusterLiveness {
  private probeAdmin: Admin | undefined
  private readonly liveness: Liveness

  constructor(o: ClusterLivenessOptions) {
    const t = o.trigger
    this.liveness = new Liveness({
      staleMs: Math.max(5000, 3 * t.heartbeatIntervalMs, 2 * t.maxWaitMs),
      probe: async () => {
        this.probeAdmin ??= o.kafka.admin({ retry: { retries: 0 } })
        await this.probeAdmin.connect()
        await this.probeAdmin.describeCluster()
      },
      onDown: (e) => {
        const err = kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', o.context)
        o.ctx()?.setHealth(false, err.message)
        o.ctx()?.log.warn({ group: o.groupId, err: err.toJSON() }, 'kafka cluster unreachable; kafkajs keeps retrying')
      },
      stuckMs: t.rebalanceTimeoutMs + t.sessionTimeoutMs + 10_000,
      onStuck: o.onStuck,
      onUp: () => {
        o.ctx()?.setHealth(true)
        o.ctx()?.log.info({ group: o.groupId }, 'kafka cluster reachable again')
      },
    })
  }

  contact(): void {
    this.liveness.contact()
  }

  stop(): void {
    this.liveness.stop()
  }

  async disconnect(): Promise<void> {
    await this.probeAdmin?.disconnect().catch(() => undefined)
  }
}

export interface StartRetryOptions {
  brokers: string[]
  startTimeoutMs: number
  groupId: string
  context: KafkaErrorContext
  log: Logger
  /** Resolves at the first assignment; rejected by the owner when the consumer cannot start. */
  started: Promise<void>
  /** Rejects `started` (called with the timeout error at startTimeoutMs). */
  fail: (err: SluiceError) => void
  /** Creates, subscribes and runs a consumer; resolves once kafkajs's first join attempt ended. */
  run: () => Promise<void>
  /** Disconnects the consumer of a failed attempt (never rejects). */
  discard: () => Promise<void>
  /** Some broker answered since the start began (tells "unreachable" from "did not join"). */
  reached: () => boolean
  stopping: () => boolean
}

/**
 * Resolves when `started` does; rejects with the error of the last attempt (not mapped) or the
 * timeout error. kafkajs gives up connecting after its own retries: this tries again until
 * startTimeoutMs, unless the answer will not change (credentials, a missing topic).
 */
export async function startWithRetry(o: StartRetryOptions): Promise<void> {
  const deadline = Date.now() + o.startTimeoutMs
  let lastError: unknown
  const timer = setTimeout(() => {
    const err = o.reached()
      ? new SluiceError('SLUICE_ERR_CONNECTOR_START', `did not join consumer group ${o.groupId} within ${o.startTimeoutMs} ms`, {
          context: o.context,
        })
      : new SluiceError(
          'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION',
          `no broker of ${o.brokers.join(', ')} answered within startTimeoutMs (${o.startTimeoutMs} ms)${lastError ? `: ${kafkaError(lastError, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', o.context).message}` : ''}`,
          { cause: lastError, context: o.context },
        )
    o.fail(err)
  }, o.startTimeoutMs)
  const attempt = async (): Promise<void> => {
    for (let n = 1; ; n++) {
      try {
        return await o.run()
      } catch (e) {
        lastError = e
        const mapped = kafkaError(e, 'SLUICE_ERR_CONNECTOR_START', o.context)
        if (mapped.code !== 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION' || o.stopping()) throw e
        const delayMs = Math.min(backoffDelay(RESTART_BACKOFF, n), Math.max(0, deadline - Date.now()))
        o.log.warn({ group: o.groupId, err: mapped.toJSON(), retryInMs: delayMs }, 'kafka brokers unreachable at start; trying again')
        await new Promise((r) => setTimeout(r, delayMs))
        if (Date.now() >= deadline || o.stopping()) throw e
        await o.discard()
      }
    }
  }
  try {
    await Promise.race([o.started, attempt().then(() => o.started)])
  } finally {
    clearTimeout(timer)
  }
}
