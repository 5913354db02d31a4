export interface BackoffPolicy {
  backoff: 'fixed' | 'exponential'
  initialDelayMs: number
  maxDelayMs: number
}

/**
 * Delay before attempt `attempt + 1`, after `attempt` failures (attempt >= 1). Exponential
 * backoff uses "equal jitter": half the exponential step fixed, half random, so retries of
 * a burst spread out without ever collapsing to zero.
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  if (policy.backoff === 'fixed') return policy.initialDelayMs
  const exp = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(exp / 2 + random() * (exp / 2))
}
