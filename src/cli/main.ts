/**
 * The `sluice` command. The CLI process itself never loads isolated-vm: functions run in worker
 * hosts that the gateway forks with --no-node-snapshot, so users need no Node flags.
 */
import { parseArgs } from 'node:util'
import { SluiceError, hasCode, toInfo } from '../errors.js'
import { issuesOf, formatIssue } from '../config/load.js'
import { runStart, runValidate, runInvoke } from './commands.js'
import { runRemote } from './remote.js'

const HELP = `sluice: event-trigger gateway

Usage:
  sluice start     [--config config/gateway.yaml]      run the gateway (JSON logs on stdout)
  sluice validate  [--config ...] [--json]             check the config and compile every function
  sluice invoke <function> [--data JSON | --events JSON] [--config ...] [--url URL]
                                                       run a function once and print result and logs
  sluice dead-letters list [--function F] [--limit N]  list dead letters of the running gateway
  sluice dead-letters replay <id>                      deliver a dead letter again
  sluice keys create <function> [--name N]             create a function key (printed once)
  sluice keys list <function>

Options:
  --config, -c   configuration file (default: config/gateway.yaml)
  --url          admin URL of a running gateway (default: from the config's http.port)
  --key          admin key (default: $SLUICE_ADMIN_KEY or the config's admin.key)
`

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP)
    return command === undefined ? 2 : 0
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c', default: 'config/gateway.yaml' },
      json: { type: 'boolean', default: false },
      data: { type: 'string' },
      events: { type: 'string' },
      url: { type: 'string' },
      key: { type: 'string' },
      function: { type: 'string' },
      limit: { type: 'string' },
      name: { type: 'string' },
    },
  })
  switch (command) {
    case 'start':
      return runStart(values.config)
    case 'validate':
      return runValidate(values.config, values.json)
    case 'invoke': {
      const fn = positionals[0]
      if (!fn) throw new SluiceError('SLUICE_ERR_CLI_USAGE', 'usage: sluice invoke <function> [--data JSON]')
      return runInvoke({ config: values.config, fn, data: values.data, events: values.events, url: values.url, key: values.key })
    }
    case 'dead-letters':
    case 'keys':
      return runRemote(command, positionals, values)
    default:
      throw new SluiceError('SLUICE_ERR_CLI_USAGE', `unknown command ${JSON.stringify(command)}; run sluice --help`)
  }
}

export function reportError(e: unknown): number {
  const issues = issuesOf(e)
  if (issues.length > 0) {
    process.stderr.write(`sluice: configuration has ${issues.length} error${issues.length === 1 ? '' : 's'}:\n`)
    for (const i of issues) process.stderr.write(`  ${formatIssue(i)}\n`)
    return 1
  }
  if (hasCode(e)) {
    const info = toInfo(e)
    process.stderr.write(`sluice: ${info.message} [${info.code}]\n`)
    if (e instanceof SluiceError) process.stderr.write(`  what to do: ${e.hint}\n`)
    return info.code === 'SLUICE_ERR_CLI_USAGE' ? 2 : 1
  }
  if (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`sluice: ${e.message} (run sluice --help) [SLUICE_ERR_CLI_USAGE]\n`)
    return 2
  }
  process.stderr.write(`sluice: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  return 1
}
