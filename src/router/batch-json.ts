/** What the router hands a worker host for one invocation: its events as JSON text. */

/** An event's part in a batch (Item has these fields). */
export interface BatchPart {
  /** The event's JSON without `attempt`. */
  json: string
  /** Where a raw body starts in `json` (it runs to the closing brace); 0: none. */
  rawAt: number
  attempts: number
}

/**
 * The batch as a JSON array, each event with its `attempt` first. Raw bodies are in it as the
 * source delivered them (checked by rawFit: they parse as exactly one value or not at all). When
 * there are any, the text starts with their positions, `index,start,end,` for each, before the
 * `[`: if the array does not parse (a raw body is not JSON), the isolate parses the events with
 * those bodies left out and gives each its own parse, or its text (see bootstrap.ts).
 */
export function batchJson(parts: readonly BatchPart[]): string {
  let json = '['
  let spans = ''
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as BatchPart
    const head = `${i ? ',' : ''}{"attempt":${p.attempts},`
    if (p.rawAt > 0) {
      // The event's own "{" is dropped (its members follow the attempt).
      const start = json.length + head.length + p.rawAt - 1
      spans += `${i},${start},${start + p.json.length - 1 - p.rawAt},`
    }
    json += head + p.json.slice(1)
  }
  json += ']'
  return spans === '' ? json : spans + json
}
