import { useEffect, useState } from 'preact/hooks'
import { api, errorText, onKeyChange } from './api'

/** A number that changes whenever the admin key does: put it in effect deps to refetch. */
export function useKeyEpoch(): number {
  const [epoch, setEpoch] = useState(0)
  useEffect(() => onKeyChange(() => setEpoch((e) => e + 1)), [])
  return epoch
}

/**
 * GETs `path` when mounted, when the key changes and when `refresh` changes. Keeps the last good
 * data while refetching.
 */
export function useApi<T>(path: string, refresh: unknown = 0): { data: T | undefined; error: string | undefined; reload: () => void } {
  const epoch = useKeyEpoch()
  const [data, setData] = useState<T | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [tick, setTick] = useState(0)
  useEffect(() => {
    const ac = new AbortController()
    api<T>(path, { signal: ac.signal }).then(
      (d) => {
        setData(d)
        setError(undefined)
      },
      (e: unknown) => {
        if (!ac.signal.aborted) setError(errorText(e))
      },
    )
    return () => ac.abort()
  }, [path, epoch, refresh, tick])
  return { data, error, reload: () => setTick((t) => t + 1) }
}
