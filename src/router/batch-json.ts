/** What the router hands a worker host for one invocation: its events as JSON text. */

/** An event's part in a batch (Item has these fields; see checkEvent's Checked). */
export interface BatchPart {
  /** The event's JSON without `attempt`; with `raw`, its members but the body, without braces. */
  json: string
  /** A raw body's text (TriggerEvent.rawBody): it goes beside the events, not into their JSON. */
  raw?: string | undefined
  attempts: number
}

/** `{"attempt":n,` after the first event (with its comma) and for it (without), for small n. */
const HEADS: string[] = []
for (let n = 0; n < 16; n++) HEADS.push(`,{"attempt":${n},`, `{"attempt":${n},`)
const headOf = (first: boolean, attempts: number): string =>
  attempts >= 0 && attempts < 16 && Number.isInteger(attempts)
    ? (HEADS[2 * attempts + (first ? 1 : 0)] as string)
    : `${first ? '' : ','}{"attempt":${attempts},`

/**
 * The batch as a JSON array, each event with its `attempt` first. Raw bodies are not in it: when
 * there are any, the text starts with `#` and a JSON array of numbers: the events array's length
 * and, for each raw body, the index of its event and its length (`#[arrayLength,index,length,...]`),
 * then the events array, then the bodies' texts one after another. The isolate parses each body on its own and sets it as its event's `body`:
 * parsed when it is JSON, else its text (see bootstrap.ts), so no body can add members or events.
 */
export function batchJson(parts: readonly BatchPart[]): string {
  // One rope of the events' texts (V8 joins it once, when the channel writes it): no event's
  // text is copied here (issue 11).
  let json = '['
  let spans = ''
  let bodies = ''
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as BatchPart
    const head = headOf(i === 0, p.attempts)
    if (p.raw !== undefined) {
      json += `${head + p.json}}`
      spans += `${i},${p.raw.length},`
      bodies += p.raw
    } else {
      // The event's own "{" is dropped (its members follow the attempt).
      json += head + p.json.slice(1)
    }
  }
  json += ']'
  return spans === '' ? json : `#[${json.length},${spans.slice(0, -1)}]${json}${bodies}`
}
