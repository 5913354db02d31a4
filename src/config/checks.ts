import type { ConnectorDefinition } from '../sdk/index.js'
import type { GatewayConfig } from './schema.js'
import type { Positioned, Path, YamlSource } from './yaml-source.js'
import type { ErrorCode } from '../errors.js'

/**
 * Checks the schema cannot express: references between sections, ranges, route clashes.
 * `invalidConnections`: connections declared but rejected by validation (already reported), so a
 * reference to one is not reported again as undeclared.
 */
export function semanticChecks(
  config: GatewayConfig,
  defs: readonly ConnectorDefinition[],
  src: YamlSource,
  invalidConnections: ReadonlySet<string> = new Set(),
): Positioned[] {
  const issues: Positioned[] = []
  const add = (code: ErrorCode, path: Path, message: string) => issues.push({ ...src.locate(path), code, message })
  const byKind = new Map(defs.map((d) => [d.kind, d]))

  if (config.store.kind === 'postgres' && config.store.url === undefined) {
    add('SLUICE_ERR_CONFIG_REQUIRED', ['store'], 'kind: postgres needs url: postgres://user:password@host:5432/database')
  }

  const checkConnection = (kind: string, connection: string | undefined, path: Path) => {
    const def = byKind.get(kind)
    if (!def?.connectionSchema) return
    if (connection === undefined) {
      add('SLUICE_ERR_CONFIG_REQUIRED', path, `needs connection: naming a ${kind} connection`)
      return
    }
    const conn = config.connections[connection]
    if (!conn) {
      if (!invalidConnections.has(connection))
        add('SLUICE_ERR_CONFIG_CONNECTION', [...path, 'connection'], `connection ${JSON.stringify(connection)} is not declared under connections:`)
    } else if (conn.kind !== kind)
      add('SLUICE_ERR_CONFIG_CONNECTION', [...path, 'connection'], `connection ${JSON.stringify(connection)} is a ${conn.kind} connection, not ${kind}`)
  }

  const routes = new Map<string, string>()
  for (const fn of Object.values(config.functions)) {
    const base = ['functions', fn.name]
    const triggerPath = [...base, 'trigger', fn.trigger.kind]
    checkConnection(fn.trigger.kind, fn.trigger.connection, triggerPath)
    for (const issue of byKind.get(fn.trigger.kind)?.validateTrigger?.(fn.trigger.options) ?? []) {
      add(issue.code, [...triggerPath, ...issue.path], issue.message)
    }
    for (const [name, out] of Object.entries(fn.outputs)) checkConnection(out.kind, out.connection, [...base, 'outputs', name, out.kind])
    if (fn.scale.min > fn.scale.max) add('SLUICE_ERR_CONFIG_TYPE', [...base, 'scale', 'min'], `must be <= scale.max (${fn.scale.max})`)
    if (fn.retry.initialDelayMs > fn.retry.maxDelayMs) {
      add('SLUICE_ERR_CONFIG_TYPE', [...base, 'retry', 'initialDelayMs'], `must be <= retry.maxDelayMs (${fn.retry.maxDelayMs})`)
    }
    if (fn.cpuTimeMs > fn.timeoutMs) add('SLUICE_ERR_CONFIG_TYPE', [...base, 'cpuTimeMs'], `must be <= timeoutMs (${fn.timeoutMs})`)
    if (fn.trigger.kind === 'http') {
      // Same shape as the server sees it: parameter names do not matter, case and wildcards do.
      const route = String(fn.trigger.options.route)
        .replace(/\{\*[^}]*\}/g, '*')
        .replace(/\{[^}]*\}/g, '{}')
      for (const method of fn.trigger.options.methods as string[]) {
        const key = `${method} ${route}`
        const other = routes.get(key)
        if (other)
          add('SLUICE_ERR_CONFIG_ROUTE', [...triggerPath, 'route'], `${method} /api/${String(fn.trigger.options.route)} is also the route of function ${other}`)
        else routes.set(key, fn.name)
      }
    }
  }
  return issues
}
