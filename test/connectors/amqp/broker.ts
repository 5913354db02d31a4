/**
 * RabbitMQ helpers for the AMQP tests: the system broker at 127.0.0.1:5672 (shared with test files
 * running in parallel, so never restarted), rabbitmqctl queries, and a dedicated RabbitMQ node for
 * the tests that restart the broker.
 *
 * The dedicated node is the same rabbitmq-server binary started as a second node
 * (`sluice-test-<pid>-<n>@localhost`) with its own ports, data and log folder under /tmp, started and
 * stopped with rabbitmq-server / rabbitmqctl. It needs root (the server runs as the rabbitmq user,
 * whose Erlang cookie the CLI shares) or the rabbitmq user itself. It boots in 2-5 s here.
 */
import { execFile, execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib'

const run = promisify(execFile)

export const RABBIT_URL = 'amqp://guest:guest@127.0.0.1:5672'

let seq = 0
/** A name no other test (or test file running in parallel) uses. */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`
}

export async function rabbitmqctl(args: string[], node?: string): Promise<string> {
  const { stdout } = await run('rabbitmqctl', [...(node ? ['-n', node] : []), ...args], { timeout: 60_000 })
  return stdout
}

/** Ready and unacknowledged messages of a queue, as the broker counts them. */
export async function queueCounts(queue: string, node?: string): Promise<{ ready: number; unacked: number } | undefined> {
  const out = await rabbitmqctl(['list_queues', '-s', 'name', 'messages_ready', 'messages_unacknowledged'], node)
  for (const line of out.split('\n')) {
    const [name, ready, unacked] = line.split('\t')
    if (name === queue) return { ready: Number(ready), unacked: Number(unacked) }
  }
  return undefined
}

export interface BrokerConnection {
  pid: string
  name: string
  /** Negotiated heartbeat in seconds. */
  heartbeat: number
}

/** Connections at the broker with the name clients gave them (clientProperties.connection_name). */
export async function connections(node?: string): Promise<BrokerConnection[]> {
  const out = await rabbitmqctl(['list_connections', '-s', 'pid', 'timeout', 'client_properties'], node)
  const list: BrokerConnection[] = []
  for (const line of out.split('\n')) {
    const [pid, timeout, props] = line.split('\t')
    const name = /\{"connection_name","([^"]*)"\}/.exec(props ?? '')?.[1]
    if (pid && name !== undefined) list.push({ pid, name, heartbeat: Number(timeout) })
  }
  return list
}

/** Closes, server-side, every connection whose name starts with `prefix`; returns how many. */
export async function closeConnections(prefix: string, node?: string): Promise<number> {
  const found = (await connections(node)).filter((c) => c.name.startsWith(prefix))
  for (const c of found) await rabbitmqctl(['close_connection', c.pid, 'sluice test: closed by the server'], node)
  return found.length
}

/** A test's own connection for declaring, publishing (with confirms) and cleaning up. */
export class Client {
  private constructor(
    readonly model: ChannelModel,
    readonly ch: ConfirmChannel,
  ) {}

  static async open(url = RABBIT_URL): Promise<Client> {
    const model = await connect(url, { clientProperties: { connection_name: 'sluice-test-client' } })
    model.on('error', () => undefined)
    const ch = await model.createConfirmChannel()
    ch.on('error', () => undefined)
    return new Client(model, ch)
  }

  /** Publishes JSON bodies to a queue (default exchange) or exchange, resolving once all are confirmed. */
  async publish(
    bodies: unknown[],
    to: { queue: string } | { exchange: string; routingKey: string },
    props: (i: number) => Record<string, unknown> = () => ({}),
  ): Promise<void> {
    const [exchange, key] = 'queue' in to ? ['', to.queue] : [to.exchange, to.routingKey]
    bodies.forEach((b, i) => this.ch.publish(exchange, key, Buffer.from(JSON.stringify(b)), { persistent: true, contentType: 'application/json', ...props(i) }))
    await this.ch.waitForConfirms()
  }

  /** Takes every message of `queue` (acking them) until it is empty. */
  async drain(queue: string): Promise<Array<{ body: unknown; headers: Record<string, unknown>; props: Record<string, unknown> }>> {
    const out = []
    for (;;) {
      const m = await this.ch.get(queue, { noAck: true })
      if (!m) return out
      out.push({
        body: JSON.parse(m.content.toString()) as unknown,
        headers: (m.properties.headers ?? {}) as Record<string, unknown>,
        props: m.properties as unknown as Record<string, unknown>,
      })
    }
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => undefined)
  }
}

async function freePort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

async function canConnect(url: string): Promise<boolean> {
  try {
    const m = await connect(url, { timeout: 1000 })
    m.on('error', () => undefined)
    await m.close()
    return true
  } catch {
    return false
  }
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

let nodes = 0

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Stops the dedicated nodes of test processes that died without their afterAll (a killed test
 * run) and removes their folders: each folder names its node in `node.txt`.
 */
async function reapStale(): Promise<void> {
  for (const entry of readdirSync('/tmp')) {
    if (!entry.startsWith('sluice-rabbit-')) continue
    const dir = join('/tmp', entry)
    const file = join(dir, 'node.txt')
    if (!existsSync(file)) continue
    const node = readFileSync(file, 'utf8').trim()
    const owner = Number(/^sluice-test-(\d+)-/.exec(node)?.[1])
    if (!owner || alive(owner)) continue
    await rabbitmqctl(['stop'], node).catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A RabbitMQ node of its own, which tests may stop and start (see the file header). */
export class DedicatedBroker {
  private constructor(
    readonly node: string,
    readonly port: number,
    private readonly dir: string,
    private readonly launch: string,
    private readonly asRoot: boolean,
  ) {}

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`
  }

  static async start(): Promise<DedicatedBroker> {
    const uid = process.getuid?.()
    const rabbitUid = Number(execFileSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' }).trim())
    const rabbitGid = Number(execFileSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).trim())
    if (uid !== 0 && uid !== rabbitUid) throw new Error('a dedicated RabbitMQ node needs root or the rabbitmq user')
    await reapStale()
    let port = 0
    for (let i = 0; i < 50 && port === 0; i++) {
      // The CLI's own distribution ports are the node's dist port + 10000..10010: keep both ranges clear of the system node (5672, 25672, 35672).
      const p = 40000 + 2 * Math.floor(Math.random() * 2000)
      if ((await freePort(p)) && (await freePort(p + 1))) port = p
    }
    if (port === 0) throw new Error('no free port pair for a dedicated RabbitMQ node')
    const dir = mkdtempSync('/tmp/sluice-rabbit-')
    writeFileSync(join(dir, 'rabbitmq.conf'), '')
    writeFileSync(join(dir, 'enabled_plugins'), '[].')
    for (const f of ['', 'rabbitmq.conf', 'enabled_plugins']) chownSync(join(dir, f), rabbitUid, rabbitGid)
    const node = `sluice-test-${process.pid}-${++nodes}@localhost`
    writeFileSync(join(dir, 'node.txt'), node)
    const env = {
      HOME: '/var/lib/rabbitmq',
      RABBITMQ_CONF_ENV_FILE: '/dev/null',
      RABBITMQ_NODENAME: node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(port + 1),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
    }
    const launch = `cd /var/lib/rabbitmq && ${Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')} /usr/lib/rabbitmq/bin/rabbitmq-server -detached`
    const b = new DedicatedBroker(node, port, dir, launch, uid === 0)
    try {
      await b.boot()
    } catch (e) {
      await b.destroy()
      throw e
    }
    return b
  }

  private async boot(): Promise<void> {
    if (this.asRoot) await run('su', ['rabbitmq', '-s', '/bin/sh', '-c', this.launch], { timeout: 30_000 })
    else await run('/bin/sh', ['-c', this.launch], { timeout: 30_000 })
    await until(() => canConnect(this.url), 60_000, `RabbitMQ node ${this.node}`)
  }

  /** Stops the node (durable queues and persistent messages stay on disk) and starts it again. */
  async restart(): Promise<void> {
    await this.halt()
    await this.boot()
  }

  /** Starts the stopped node again. */
  async resume(): Promise<void> {
    await this.boot()
  }

  /** Stops the node, keeping its data. */
  async halt(): Promise<void> {
    await rabbitmqctl(['stop'], this.node).catch(() => undefined)
    await until(async () => !(await canConnect(this.url)), 30_000, `RabbitMQ node ${this.node} to stop`)
    // The same node name can start again only once the old VM left epmd.
    const short = this.node.split('@')[0] as string
    await until(
      async () =>
        !(await run('epmd', ['-names']).then(
          (r) => r.stdout.includes(`name ${short} at`),
          () => false,
        )),
      30_000,
      `${this.node} to leave epmd`,
    )
  }

  async destroy(): Promise<void> {
    await this.halt().catch(() => undefined)
    rmSync(this.dir, { recursive: true, force: true })
  }
}
