/**
 * What `sluice <command> --help` prints: each command's usage, options and what it does. A
 * command without an entry here gets its lines of the general help (`sluice --help`).
 */

const COMMON = `  --config, -c FILE   configuration file (default: config/gateway.yaml); relative paths in it
                      (code:, store.path) start at the project root: the nearest folder at or
                      above the file with a package.json, else the file's own folder
  --help, -h          show this help
`

const REMOTE = `  --url URL           admin URL of the running gateway (default: http://127.0.0.1:<http.port of --config>)
  --key KEY           admin key (default: $SLUICE_ADMIN_KEY or the config's admin.key)
`

const USAGE: Record<string, string> = {
  start: `Usage: sluice start [--config FILE] [--watch]

Runs the gateway: connectors, functions in sandboxed worker hosts, and one HTTP server (functions
under /api/<route>, the admin API under /admin, /metrics, the dashboard at /). JSON logs on
stdout. SIGTERM or Ctrl-C drains in-flight work and exits 0; a second signal exits at once.
SIGHUP (or POST /admin/reload) reloads the configuration and function code without losing an
event: new batches run the new code, running ones finish on the old; only what changed restarts.
An invalid configuration or a compile error is logged and the running version stays.
Without --watch, a changed function file is logged as a warning until you reload.

Options:
  --watch             reload whenever the configuration or a function source file (anything
                      its bundle imports) changes: for development
${COMMON}`,
  validate: `Usage: sluice validate [--config FILE] [--typecheck] [--json]

Checks a project without starting anything, and exits 1 with every problem at once
(file:line:col, key path, error code):
  - the configuration against its schema (unknown keys, types, ranges, \${VAR}s)
  - references: connections named by triggers and outputs, routes, schedules, topics
  - every function bundles (esbuild): syntax, imports, a default export
  - with --typecheck only: TypeScript types of the function files, with the project's own
    TypeScript (npm install --save-dev typescript)
It does not connect to brokers or the store.

Options:
  --typecheck         also type-check the function files (tsc --noEmit, with the tsconfig.json
                      nearest to them)
  --json              print the result as JSON
${COMMON}`,
  invoke: `Usage: sluice invoke <function> [--data JSON | --events JSON] [--config FILE] [--url URL]

Runs a function once and prints its result as JSON on stdout and its log lines on stderr; exits 1
when the invocation failed. Without --url it runs in a sandbox started for the purpose (outputs
are printed in the result, not sent); with --url it goes through the running gateway (outputs
are sent).

Options:
  --data JSON         the body of one event (default: null)
  --events JSON       a JSON array of events ({ id, body, meta, key }), as one batch
${REMOTE}${COMMON}`,
  simulate: `Usage: sluice simulate [--stations 200] [--rate 2000] [--url mqtt://127.0.0.1:1884] [--duration S] [--count N]

Publishes synthetic scooter telemetry over MQTT (the demo's embedded broker by default), with
station dropouts and bursts; progress on stderr.

Options:
  --stations N        number of stations (default 200)
  --rate R            messages per second in total (default 2000)
  --url URL           MQTT broker (default mqtt://127.0.0.1:1884)
  --duration S        stop after S seconds (default 0: run until Ctrl-C)
  --count N           stop after N messages (default 0: no limit)
  --dropout P         share of stations that go silent for a while (default 0.02)
  --qos 0|1           MQTT QoS (default 1)
  --topic-prefix P    topics are P/<station>/telemetry (default stations)
  --help, -h          show this help
`,
  'dead-letters': `Usage: sluice dead-letters list [--function F] [--limit N] [--json]
       sluice dead-letters replay <id>

Lists the dead letters of the running gateway as a table (id, function, error code, reason,
attempts, failed at), or as JSON with --json; replay delivers one again to its function and
exits 1 when it fails again.

Options:
  --function F        only the dead letters of function F
  --limit N           at most N letters
  --json              print the admin API's answer as JSON
${REMOTE}${COMMON}`,
  keys: `Usage: sluice keys create <function> [--name N]
       sluice keys list <function>

Creates (the key is printed once) or lists the keys of a function with auth: function; callers
send a key in the x-functions-key header.

Options:
  --name N            the key's name (default: default)
${REMOTE}${COMMON}`,
  init: `Usage: sluice init [dir]

Writes a new project into dir (default: the current folder; created when missing): package.json
(depending on this sluice), tsconfig.json for the functions, config/gateway.yaml with a built-in
MQTT broker, an HTTP, an MQTT and a timer function typed with sluice/function, a README and a
.gitignore. Refuses, writing nothing, when any of those files exists. Then: npm install, npm start.

Options:
  --help, -h          show this help
`,
  new: `Usage: sluice new <name> --trigger http|mqtt|amqp|kafka|eventhubs|timer [--config FILE]

Writes functions/<name>.ts (below the project root) from the trigger's template and adds the
function's block under functions: in the configuration, leaving every other line of the file as
it was (comments included). A trigger that needs a connection uses the first connection of its
kind, or gets a new one with placeholder settings to point at your broker. Refuses a name that
is in the configuration already, or a file that exists.

Options:
  --trigger KIND      http, mqtt, amqp, kafka, eventhubs or timer
${COMMON}`,
}

/**
 * The usage of `command`: its own text, else its lines of `help` (the general help), else
 * undefined (no such command).
 */
export function usageOf(command: string, help: string): string | undefined {
  const own = USAGE[command]
  if (own !== undefined) return own
  const lines = help.split('\n')
  const forms: string[] = []
  const said: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string
    if (!line.startsWith(`  sluice ${command} `) && line !== `  sluice ${command}`) continue
    // A usage line: the form, then (after a run of spaces) what it does, or that on the next lines.
    const [form = '', ...rest] = line.trim().split(/\s{3,}/)
    forms.push(form.replace(/\s+/g, ' '))
    if (rest.length > 0) said.push(rest.join(' '))
    while ((lines[i + 1] ?? '').startsWith('      ')) said.push((lines[++i] as string).trim())
  }
  if (forms.length === 0) return undefined
  return `Usage: ${forms.join('\n       ')}\n\n${said.length > 0 ? `${said.join('\n')}\n\n` : ''}Run sluice --help for every command and option.\n`
}
