/** Plain-text tables for the CLI. */

/** A dead letter as GET /admin/dead-letters lists it (the fields the table shows). */
export interface DeadLetterRow {
  id: string
  function: string
  error: { code: string; message: string; context?: Record<string, unknown> }
  attempts: number
  failedAt: string
}

const REASON_WIDTH = 60

function oneLine(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat
}

/** Left-aligned columns, two spaces apart, with a header row. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return `${[line(header), ...rows.map(line)].join('\n')}\n`
}

/**
 * The dead letters as a table: id, function, error code, reason (the function's own reason when
 * it gave one, else the error message), attempts, failed at. `next`: the id to page on from.
 */
export function deadLetterTable(items: readonly DeadLetterRow[], next?: string): string {
  if (items.length === 0) return 'no dead letters\n'
  const rows = items.map((d) => {
    const reason = typeof d.error.context?.reason === 'string' ? d.error.context.reason : d.error.message
    return [d.id, d.function, d.error.code, oneLine(reason, REASON_WIDTH), String(d.attempts), d.failedAt]
  })
  const more = next ? `more letters follow: the admin API pages on with ?after=${next}\n` : ''
  return `${table(['ID', 'FUNCTION', 'ERROR CODE', 'REASON', 'ATTEMPTS', 'FAILED AT'], rows)}${items.length} dead letter${items.length === 1 ? '' : 's'}; replay one with sluice dead-letters replay <id>\n${more}`
}
