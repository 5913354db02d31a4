import type { Flow } from '../sdk/index.js'

/**
 * Back-pressure of one function: paused when its backlog reaches `max`, resumed when it falls
 * to three quarters of it (the gap keeps a busy source from flapping).
 */
export class FlowControl implements Flow {
  private state = false
  private readonly listeners = new Set<(paused: boolean) => void>()
  private waiters: Array<() => void> = []

  constructor(private readonly max: number) {}

  get paused(): boolean {
    return this.state
  }

  update(backlog: number): void {
    const next = this.state ? backlog > Math.floor(this.max * 0.75) : backlog >= this.max
    if (next === this.state) return
    this.state = next
    for (const l of this.listeners) l(next)
    if (!next) for (const w of this.waiters.splice(0)) w()
  }

  wait(): Promise<void> {
    if (!this.state) return Promise.resolve()
    return new Promise((r) => this.waiters.push(r))
  }

  onChange(listener: (paused: boolean) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Releases every waiter (shutdown). */
  release(): void {
    for (const w of this.waiters.splice(0)) w()
  }
}
