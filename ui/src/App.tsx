/** Layout, navigation, the admin-key prompt and the routes. */
import { useEffect, useState } from 'preact/hooks'
import { adminKey, onKeyChange, onUnauthorized, setAdminKey } from './api'
import { DeadLetters } from './DeadLetters'
import { FunctionPage } from './FunctionPage'
import { live, useLive } from './live'
import { Overview } from './Overview'
import { Link, usePath } from './router'

export function App() {
  const path = usePath()
  const [needKey, setNeedKey] = useState(false)
  const [, setKeyVersion] = useState(0)
  const state = useLive()

  useEffect(() => {
    live.restart()
    const offUnauth = onUnauthorized(() => setNeedKey(true))
    const offKey = onKeyChange(() => {
      setKeyVersion((v) => v + 1)
      live.restart()
    })
    return () => {
      offUnauth()
      offKey()
      live.stop()
    }
  }, [])

  const fnMatch = /^\/functions\/([^/]+)$/.exec(path)
  const page = fnMatch ? (
    <FunctionPage key={fnMatch[1]} name={decodeURIComponent(fnMatch[1] ?? '')} />
  ) : path === '/dead-letters' ? (
    <DeadLetters />
  ) : (
    <Overview />
  )
  const status = state.snapshot?.status

  return (
    <div class="app">
      <header class="top">
        <Link href="/" class="brand">
          sluice
        </Link>
        <nav>
          <Link href="/" class={path === '/' ? 'active' : ''} testid="nav-overview">
            Overview
          </Link>
          <Link href="/dead-letters" class={path === '/dead-letters' ? 'active' : ''} testid="nav-dead-letters">
            Dead letters
          </Link>
        </nav>
        <span class="spacer" />
        {status && (
          <span class={`badge status-${status}`} data-testid="gateway-status">
            {status}
          </span>
        )}
        <span class={`live live-${state.status}`} data-testid="live-status" title="live updates">
          {state.status === 'live' ? '● live' : state.status}
        </span>
        {adminKey() !== null && (
          <button type="button" class="link" onClick={() => setAdminKey(null)}>
            forget key
          </button>
        )}
      </header>
      {needKey && <KeyPrompt onDone={() => setNeedKey(false)} />}
      <main>{page}</main>
    </div>
  )
}

function KeyPrompt(props: { onDone: () => void }) {
  const [value, setValue] = useState('')
  return (
    <div class="key-prompt" role="dialog" aria-labelledby="key-title" data-testid="key-prompt">
      <form
        onSubmit={(e) => {
          e.preventDefault()
          if (!value) return
          setAdminKey(value)
          props.onDone()
        }}
      >
        <h2 id="key-title">Admin key</h2>
        <p>
          This gateway needs its admin key (<code>admin.key</code> in its config). It is kept in this browser tab only.
        </p>
        <input
          type="password"
          autocomplete="current-password"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          data-testid="key-input"
          autofocus
        />
        <button type="submit" data-testid="key-submit">
          Use key
        </button>
      </form>
    </div>
  )
}
