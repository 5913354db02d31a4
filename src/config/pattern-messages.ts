/**
 * Messages for values that do not match a schema pattern: what the value should look like and,
 * where the mistake is a common one, the corrected value, instead of the raw regular expression.
 */
import type { Path } from './yaml-source.js'

const ROUTE_FORM =
  'must be a path below /api/ of letters, digits, . _ ~ - and {name} parameters, with an optional last {*name} wildcard, e.g. stations/{id} or files/{*path}'

/** What to say about HTTP trigger route `route` that does not match the route pattern. */
function routeMessage(route: string, pattern: RegExp): string {
  const trimmed = route.trim()
  // The most common slip: writing the URL the function answers on instead of the route below /api/.
  const corrected = trimmed
    .replace(/^\/+/, '')
    .replace(/^api(\/+|$)/, '')
    .replace(/\/+$/, '')
  if (corrected !== trimmed && corrected !== '' && pattern.test(corrected)) {
    const why = /^\/*api(\/|$)/.test(trimmed)
      ? 'routes are written without the /api/ prefix (the gateway adds it)'
      : 'routes are written without a leading or trailing /'
    return `${why}: write route: ${corrected} (served at /api/${corrected})`
  }
  if (corrected === '') return `${ROUTE_FORM}; /api/ itself cannot be a route`
  return ROUTE_FORM
}

/**
 * A readable message for `value` at `path` failing `pattern`, or undefined to use the generic
 * one. Paths are full config key paths (functions.<name>.trigger.http.route).
 */
export function patternMessage(path: Path, value: unknown, pattern: string): string | undefined {
  if (typeof value !== 'string') return undefined
  const n = path.length
  if (n === 5 && path[0] === 'functions' && path[2] === 'trigger' && path[3] === 'http' && path[4] === 'route') return routeMessage(value, new RegExp(pattern))
  if (n === 3 && path[0] === 'functions' && path[2] === 'orderKey') return 'must be source, none, or a path into the event such as body.station or meta.topic'
  return undefined
}
