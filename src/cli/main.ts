/**
 * The `sluice` command. The CLI process itself never loads isolated-vm: functions run in worker
 * hosts that the gateway forks with --no-node-snapshot, so users need no Node flags.
 */
import { parseArgs } from 'node:util'
import { ERRORS, SluiceError, hasCode, toInfo } from '../errors.js'
import { issuesOf, formatIssue } from '../config/issues.js'
import { usageOf } from './usage.js'

const HELP = `sluice: event-trigger gateway

Usage:
  sluice start     [--config config/gateway.yaml] [--watch]
                                                       run the gateway (JSON logs on stdout); --watch
                                                       reloads changed functions and config
  sluice validate  [--config ...] [--typecheck] [--json]
                                                       check the config and bundle every function
  sluice invoke <function> [--data JSON | --events JSON] [--config ...] [--url URL]
                                                       run a function once and print result and logs
  sluice simulate  [--stations 200] [--rate 2000] [--url mqtt://127.0.0.1:1884] [--duration S] [--count N]
                                                       publish synthetic scooter telemetry over MQTT
  sluice dead-letters list [--function F] [--limit N]  list dead letters of the running gateway
  sluice dead-letters replay <id>                      deliver a dead letter again
  sluice keys create <function> [--name N]             create a function key (printed once)
  sluice keys list <function>
  sluice init [dir]                                    write a new project (HTTP, MQTT and timer functions)
  sluice new <name> --trigger http|mqtt|amqp|kafka|eventhubs|timer [--config ...]
                                                       add a typed function and its YAML block

Options:
  --config, -c   configuration file (default: config/gateway.yaml)
  --url          admin URL of a running gateway (default: from the config's http.port)
  --key          admin key (default: $SLUICE_ADMIN_KEY or the config's admin.key)
  --help, -h     help for a command: sluice <command> --help
`

/** The options before a `--` terminator. */
function optionArgs(args: string[]): string[] {
  const end = args.indexOf('--')
  return end === -1 ? args : args.slice(0, end)
}

/** parseArgs' TypeErrors as one line naming the command and where to read its usage. */
function usageError(command: string, e: unknown): unknown {
  const code = (e as { code?: unknown } | null)?.code
  if (!(e instanceof TypeError) || typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return e
  const unknown = /Unknown option '([^']+)'/.exec(e.message)?.[1]
  const what = unknown ? `unknown option ${unknown} for sluice ${command}` : `sluice ${command}: ${e.message.replace(/\.$/, '')}`
  return new SluiceError('SLUICE_ERR_CLI_USAGE', `${what} (run sluice ${command} --help)`)
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write((command === 'help' && rest[0] ? usageOf(rest[0], HELP) : undefined) ?? HELP)
    return command === undefined ? 2 : 0
  }
  // Every command answers --help with its own usage, whatever else is on the line.
  if (optionArgs(rest).some((a) => a === '--help' || a === '-h')) {
    const usage = usageOf(command, HELP)
    if (usage === undefined) throw new SluiceError('SLUICE_ERR_CLI_USAGE', `unknown command ${JSON.stringify(command)}; run sluice --help`)
    process.stdout.write(usage)
    return 0
  }
  let parsed
  try {
    parsed = parseArgs({
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
        stations: { type: 'string', default: '200' },
        rate: { type: 'string', default: '2000' },
        duration: { type: 'string', default: '0' },
        count: { type: 'string', default: '0' },
        dropout: { type: 'string', default: '0.02' },
        qos: { type: 'string', default: '1' },
        'topic-prefix': { type: 'string', default: 'stations' },
        trigger: { type: 'string' },
        typecheck: { type: 'boolean', default: false },
        watch: { type: 'boolean', default: false },
      },
    })
  } catch (e) {
    throw usageError(command, e)
  }
  const { values, positionals } = parsed
  switch (command) {
    // Commands load what they need when they run, so --help and usage errors answer at once.
    case 'start':
      return (await import('./commands.js')).runStart(values.config, { watch: values.watch })
    case 'validate':
      return (await import('./commands.js')).runValidate(values.config, { json: values.json, typecheck: values.typecheck })
    case 'invoke': {
      const fn = positionals[0]
      if (!fn) throw new SluiceError('SLUICE_ERR_CLI_USAGE', 'usage: sluice invoke <function> [--data JSON]')
      return (await import('./commands.js')).runInvoke({
        config: values.config,
        fn,
        data: values.data,
        events: values.events,
        url: values.url,
        key: values.key,
      })
    }
    case 'simulate': {
      const num = (name: string, v: string, min: number) => {
        const n = Number(v)
        if (!Number.isFinite(n) || n < min) throw new SluiceError('SLUICE_ERR_CLI_USAGE', `--${name} must be a number >= ${min}`)
        return n
      }
      const qos = num('qos', values.qos, 0)
      if (qos !== 0 && qos !== 1) throw new SluiceError('SLUICE_ERR_CLI_USAGE', '--qos must be 0 or 1')
      const r = await (await import('./simulate.js')).simulate({
        url: values.url ?? 'mqtt://127.0.0.1:1884',
        stations: Math.floor(num('stations', values.stations, 1)),
        rate: num('rate', values.rate, 1),
        duration: num('duration', values.duration, 0),
        count: Math.floor(num('count', values.count, 0)),
        dropout: num('dropout', values.dropout, 0),
        qos,
        topicPrefix: values['topic-prefix'],
        progress: process.stderr,
      })
      return r.failed === 0 ? 0 : 1
    }
    case 'init':
      return (await import('./init.js')).runInit(positionals[0])
    case 'new': {
      const name = positionals[0]
      if (!name || !values.trigger)
        throw new SluiceError('SLUICE_ERR_CLI_USAGE', 'usage: sluice new <name> --trigger http|mqtt|amqp|kafka|eventhubs|timer [--config FILE]')
      return (await import('./new-function.js')).runNew({ name, trigger: values.trigger, config: values.config })
    }
    case 'dead-letters':
    case 'keys':
      return (await import('./remote.js')).runRemote(command, positionals, values)
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
    // A usage error is one line: its message says what to run.
    if (info.code === 'SLUICE_ERR_CLI_USAGE') return 2
    process.stderr.write(`  what to do: ${ERRORS[info.code].hint}\n`)
    return 1
  }
  process.stderr.write(`sluice: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  return 1
}
