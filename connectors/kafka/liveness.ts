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
