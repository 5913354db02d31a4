/** What the router hands a worker host for one invocation: its events as JSON text. */

/** An event's part in a batch (Item has these fields). */
export interface BatchPart {
  /** The event's JSON without `attempt`. */
  json: string
  /** Where a raw body starts in `json` (it runs to the closing brace); 0: none. */
  rawAt: number
  attempts: number
  /** `json` without its leading `{`, when admission kept it (checkEvent's `tail`). */
  tail?: string
}

/** `{"attempt":n,` after the first event (with its comma) and for it (without), for small n. */
const HEADS: string[] = []
for (let n = 0; n < 16; n++) HEADS.push(`,{"attempt":${n},`, `{"attempt":${n},`)
const headOf = (first: boolean, attempts: number): string =>
  attempts >= 0 && attempts < 16 && Number.isInteger(attempts)
    ? (HEADS[2 * attempts + (first ? 1 : 0)] as string)
    : `${first ? '' : ','}{"attempt":${attempts},`

/**
 * The batch as a JSON array, each event with its `attempt` first. Raw bodies are in it as the
 * source delivered them (checked by rawFit: they parse as exactly one value or not at all). When
 * there are any, the text starts with their positions, `index,start,end,` for each, before the
 * `[`: if the array does not parse (a raw body is not JSON), the isolate parses the events with
 * those bodies left out and gives each its own parse, or its text (see bootstrap.ts).
 */
export function batchJson(parts: readonly BatchPart[]): string {
  // One rope of the events' texts (V8 joins it once, when the channel writes it): no event's
  // text is copied here (issue 11).
  let json = '['
  let spans = ''
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as BatchPart
    const head = headOf(i === 0, p.attempts)
    // The event's own "{" is dropped (its members follow the attempt).
    const tail = p.tail ?? p.json.slice(1)
    if (p.rawAt > 0) {
      const start = json.length + head.length + p.rawAt - 1
      spans += `${i},${start},${start + tail.length - p.rawAt},`
    }
    json += head + tail
  }
  json += ']'
  return spans === '' ? json : spans + json
}
