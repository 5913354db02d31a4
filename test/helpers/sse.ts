/** Reads a server-sent-events response frame by frame, for tests of GET /admin/events. */
export interface SseFrame {
  event: string
  data: unknown
}

export interface SseReader {
  res: Response
  /** Resolves with the next frame of `event` (and matching `pred`), skipping others; throws after `timeoutMs`. */
  next<T = unknown>(event: string, pred?: (data: T) => boolean, timeoutMs?: number): Promise<T>
  /** Resolves when the server ends the stream; throws after `timeoutMs`. */
  ended(timeoutMs?: number): Promise<void>
  close(): void
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const ac = new AbortController()
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal })
  const frames: SseFrame[] = []
  const waiters = new Set<() => void>()
  let done = false
  let failure: unknown
  const wake = () => {
    for (const w of waiters) w()
  }
  if (res.ok && res.body) {
    void (async () => {
      const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
      let buf = ''
      try {
        for (;;) {
          const { value, done: end } = await reader.read()
          if (end) break
          buf += value
          let i: number
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const text = buf.slice(0, i)
            buf = buf.slice(i + 2)
            let event = 'message'
            const data: string[] = []
            for (const line of text.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7)
              else if (line.startsWith('data: ')) data.push(line.slice(6))
            }
            if (data.length > 0) frames.push({ event, data: JSON.parse(data.join('\n')) })
          }
          wake()
        }
      } catch (e) {
        if (!ac.signal.aborted) failure = e
      }
      done = true
      wake()
    })()
  }
  let cursor = 0
  const waitUntil = async (check: () => boolean, timeoutMs: number, what: string) => {
    const end = Date.now() + timeoutMs
    while (!check()) {
      if (failure) throw failure as Error
      const left = end - Date.now()
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(wakeUp, left)
        function wakeUp() {
          clearTimeout(t)
          waiters.delete(wakeUp)
          resolve()
        }
        waiters.add(wakeUp)
      })
    }
  }
  return {
    res,
    async next<T>(event: string, pred?: (data: T) => boolean, timeoutMs = 15_000): Promise<T> {
      let found: T | undefined
      await waitUntil(
        () => {
          while (cursor < frames.length) {
            const f = frames[cursor++] as SseFrame
            if (f.event === event && (!pred || pred(f.data as T))) {
              found = f.data as T
              return true
            }
          }
          if (done) throw new Error(`the stream ended before a ${event} frame`)
          return false
        },
        timeoutMs,
        `a ${event} frame`,
      )
      return found as T
    },
    ended: (timeoutMs = 15_000) => waitUntil(() => done, timeoutMs, 'the end of the stream'),
    close: () => ac.abort(),
  }
}
