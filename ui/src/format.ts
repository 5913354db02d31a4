export function ms(n: number | undefined): string {
  if (n === undefined) return '–'
  if (n < 1) return `${n.toFixed(2)} ms`
  if (n < 1000) return `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`
  return `${(n / 1000).toFixed(2)} s`
}

export function rate(n: number): string {
  return n >= 100 ? String(Math.round(n)) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
}

export function percent(n: number): string {
  return `${(n * 100).toFixed(n > 0 && n < 0.1 ? 1 : 0)} %`
}

export function time(iso: string | number): string {
  const d = new Date(iso)
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`
}

export function dateTime(iso: string): string {
  const d = new Date(iso)
  return `${d.toLocaleDateString()} ${time(iso)}`
}

/** A short summary of a trigger's options for tables. */
export function triggerSummary(kind: string, options: Record<string, unknown>, connection?: string): string {
  const main = options.topic ?? options.queue ?? options.route ?? options.schedule ?? options.eventHub ?? options.topics ?? ''
  const parts = [kind, connection ? `@${connection}` : '', main === '' ? '' : ` ${Array.isArray(main) ? main.join(',') : String(main)}`]
  return parts.join('')
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2) ?? 'undefined'
}
