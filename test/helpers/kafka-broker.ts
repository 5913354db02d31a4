/**
 * A private Apache Kafka 4 broker (KRaft, broker and controller in one JVM, no ZooKeeper) for the
 * Kafka tests and bench/kafka.ts. Each `KafkaBroker.start()` formats a fresh log dir in a temp
 * folder, writes a server.properties (random free ports, small segments, one replica for the
 * internal topics, no initial rebalance delay, short group session minimum) and runs `kafka.Kafka`
 * with -Xmx512m; it resolves once a kafkajs admin gets metadata and the group coordinator answers.
 * `stop()` (SIGTERM), `kill()` (SIGKILL) and `start()` again reuse the same log dir and ports.
 * The broker's log is `server.log` in its temp folder (`logFile`); it is kept when a start fails.
 *
 * The jars come from test/kafka-broker/pom.xml (see its README); they are fetched with Maven when
 * the jars folder is missing (the local Maven cache keeps them between runs).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Kafka, logLevel, type Admin, type ITopicConfig } from 'kafkajs'
import { freePort, waitForPort } from '../connectors/mqtt/broker.js'

const BROKER_DIR = resolve(import.meta.dirname, '../kafka-broker')
export const KAFKA_JARS = join(BROKER_DIR, 'jars')
const POM = join(BROKER_DIR, 'pom.xml')

/** Users of the SASL listeners (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 know the same ones). */
export type KafkaUsers = Record<string, string>

export interface KafkaBrokerOptions {
  /** Partitions of topics created on first use (auto-create). Default 1. */
  partitions?: number
  /** Adds a SASL_PLAINTEXT listener (mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with these users. */
  sasl?: KafkaUsers
  /**
   * Adds an SSL listener (client certificate required) and a SASL_SSL listener (PLAIN, SCRAM;
   * no client certificate): a PKCS12 keystore with the broker's key and certificate, and the PEM
   * of the CA that signs client certificates.
   */
  tls?: { keystore: string; password: string; caPem: string }
  /** Extra server.properties lines. */
  properties?: Record<string, string | number>
}

export interface KafkaListeners {
  plaintext: string
  sasl?: string
  ssl?: string
  saslSsl?: string
}

/** Brokers of this process: killed if the process exits without stopping them. */
const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL')
})

function jarsPresent(): boolean {
  return existsSync(KAFKA_JARS) && readdirSync(KAFKA_JARS).some((f) => /^kafka_2\.13-.*\.jar$/.test(f))
}

/**
 * Fetches the broker's jars with Maven unless they are there. Several test processes may call it
 * at once: one fetches (into a temp folder, renamed when complete), the others wait for it.
 */
export async function ensureKafkaJars(): Promise<void> {
  if (jarsPresent()) return
  const lock = `${KAFKA_JARS}.lock`
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch {
      // Another process fetches; a lock older than 10 minutes is left from a killed run.
      if (Date.now() - statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 600_000) rmSync(lock, { recursive: true, force: true })
      await new Promise((r) => setTimeout(r, 500))
      if (jarsPresent()) return
    }
  }
  try {
    if (jarsPresent()) return
    const tmp = `${KAFKA_JARS}.tmp-${process.pid}`
    process.stderr.write(`fetching the Kafka broker's jars with Maven (${POM}) ...\n`)
    const r = spawnSync('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${tmp}`], { stdio: ['ignore', 'inherit', 'inherit'] })
    if (r.status !== 0)
      throw new Error(
        `mvn could not fetch the Kafka broker (exit ${r.status ?? r.signal}); run: mvn -f ${POM} dependency:copy-dependencies -DoutputDirectory=${KAFKA_JARS}`,
      )
    rmSync(KAFKA_JARS, { recursive: true, force: true })
    renameSync(tmp, KAFKA_JARS)
    process.stderr.write(`Kafka broker jars in ${KAFKA_JARS}\n`)
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

const JVM = ['-Xmx512m', '-Xms128m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-XX:-UsePerfData', '-Djava.awt.headless=true']

function java(args: string[]): ChildProcess {
  return spawn('java', [...JVM, '-cp', `${KAFKA_JARS}/*`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
}

export class KafkaBroker {
  /** The PLAINTEXT listener as host:port. */
  readonly address: string
  readonly listeners: KafkaListeners
  readonly logFile: string
  private proc: ChildProcess | undefined
  private stderr = ''
  private adminClient: Admin | undefined

  private constructor(
    readonly dir: string,
    ports: { plaintext: number; controller: number; sasl?: number; ssl?: number; saslSsl?: number },
  ) {
    this.address = `127.0.0.1:${ports.plaintext}`

    this.listeners = { plaintext: this.address }
    if (ports.sasl) this.listeners.sasl = `127.0.0.1:${ports.sasl}`
    if (ports.ssl) this.listeners.ssl = `127.0.0.1:${ports.ssl}`
    if (ports.saslSsl) this.listeners.saslSsl = `127.0.0.1:${ports.saslSsl}`
    this.logFile = join(dir, 'server.log')
  }

  /** Formats a fresh log dir and starts the broker; resolves once it answers. */
  static async start(opts: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
    await ensureKafkaJars()
    const dir = mkdtempSync(join(tmpdir(), 'sluice-kafka-'))
    const ports = {
      plaintext: await freePort(),
      controller: await freePort(),
      ...(opts.sasl ? { sasl: await freePort() } : {}),
      ...(opts.tls ? { ssl: await freePort(), saslSsl: await freePort() } : {}),
    }
    const b = new KafkaBroker(dir, ports)
    writeFileSync(join(dir, 'server.properties'), b.properties(opts, ports))
    writeFileSync(join(dir, 'log4j2.yaml'), log4j(b.logFile))
    await b.format(opts)
    await b.start()
    return b
  }

  private properties(opts: KafkaBrokerOptions, ports: { plaintext: number; controller: number; sasl?: number; ssl?: number; saslSsl?: number }): string {
    const listeners = [`PLAINTEXT://127.0.0.1:${ports.plaintext}`, `CONTROLLER://127.0.0.1:${ports.controller}`]
    const map = ['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT']
    const p: Record<string, string | number> = {
      'process.roles': 'broker,controller',
      'node.id': 1,
      'controller.quorum.bootstrap.servers': `127.0.0.1:${ports.controller}`,
      'controller.listener.names': 'CONTROLLER',
      'inter.broker.listener.name': 'PLAINTEXT',
      'log.dirs': join(this.dir, 'data'),
      'num.partitions': opts.partitions ?? 1,
      'auto.create.topics.enable': 'true',
      'offsets.topic.replication.factor': 1,
      'offsets.topic.num.partitions': 3,
      'transaction.state.log.replication.factor': 1,
      'transaction.state.log.min.isr': 1,
      'transaction.state.log.num.partitions': 3,
      'share.coordinator.state.topic.replication.factor': 1,
      'share.coordinator.state.topic.min.isr': 1,
      'group.initial.rebalance.delay.ms': 0,
      'group.min.session.timeout.ms': 1000,
      // A restart after kill -9 waits for the old incarnation's session to end: keep it short.
      'broker.session.timeout.ms': 3000,
      'broker.heartbeat.interval.ms': 500,
      'num.network.threads': 2,
      'num.io.threads': 2,
      'background.threads': 2,
      'num.recovery.threads.per.data.dir': 1,
      'log.segment.bytes': 1048576,
      'log.retention.bytes': 67108864,
      'log.retention.ms': 3600000,
      'log.retention.check.interval.ms': 60000,
      'log.cleaner.threads': 1,
      'log.cleaner.dedupe.buffer.size': 2097152,
      'offsets.load.buffer.size': 1048576,
      'transaction.abort.timed.out.transaction.cleanup.interval.ms': 10000,
    }
    if (ports.sasl) {
      listeners.push(`SASL_PLAINTEXT://127.0.0.1:${ports.sasl}`)
      map.push('SASL_PLAINTEXT:SASL_PLAINTEXT')
      Object.assign(p, saslProps('sasl_plaintext', opts.sasl ?? {}))
    }
    if (ports.ssl && ports.saslSsl && opts.tls) {
      listeners.push(`SSL://127.0.0.1:${ports.ssl}`, `SASL_SSL://127.0.0.1:${ports.saslSsl}`)
      map.push('SSL:SSL', 'SASL_SSL:SASL_SSL')
      const tls = {
        'ssl.keystore.type': 'PKCS12',
        'ssl.keystore.location': opts.tls.keystore,
        'ssl.keystore.password': opts.tls.password,
        'ssl.key.password': opts.tls.password,
        'ssl.truststore.type': 'PEM',
        'ssl.truststore.location': opts.tls.caPem,
      }
      for (const [k, v] of Object.entries(tls)) {
        p[`listener.name.ssl.${k}`] = v
        p[`listener.name.sasl_ssl.${k}`] = v
      }
      p['listener.name.ssl.ssl.client.auth'] = 'required'
      p['listener.name.sasl_ssl.ssl.client.auth'] = 'none'
      Object.assign(p, saslProps('sasl_ssl', opts.sasl ?? {}))
    }
    p.listeners = listeners.join(',')
    p['advertised.listeners'] = listeners.filter((l) => !l.startsWith('CONTROLLER')).join(',')
    p['listener.security.protocol.map'] = map.join(',')
    Object.assign(p, opts.properties ?? {})
    return `${Object.entries(p)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join('\n')}\n`
  }

  /** StorageTool format --standalone (one voter: this node), with the SCRAM users. */
  private async format(opts: KafkaBrokerOptions): Promise<void> {
    // A Kafka Uuid: 16 random bytes, base64url without padding (it may start with '-': hence --cluster-id=).
    const clusterId = randomBytes(16).toString('base64url')
    const scram = Object.entries(opts.sasl ?? {}).flatMap(([name, password]) =>
      ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((m) => ['--add-scram', `${m}=[name=${name},password=${password}]`]),
    )
    await this.runToEnd(
      java([
        `-Dlog4j2.configurationFile=${join(this.dir, 'log4j2.yaml')}`,
        'kafka.tools.StorageTool',
        'format',
        '--standalone',
        `--cluster-id=${clusterId}`,
        '-c',
        join(this.dir, 'server.properties'),
        ...scram,
      ]),
      'format',
    )
  }

  private runToEnd(p: ChildProcess, what: string): Promise<void> {
    let err = ''
    p.stderr?.on('data', (d: Buffer) => (err += d.toString()))
    return new Promise((resolve, reject) => {
      p.once('error', reject)
      p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kafka ${what} exited with ${code}: ${err.slice(-2000)}`))))
    })
  }

  /** Starts the broker on its log dir (nothing when it runs); resolves once it answers. */
  async start(): Promise<void> {
    if (this.proc) return
    this.stderr = ''
    const p = java([`-Dlog4j2.configurationFile=${join(this.dir, 'log4j2.yaml')}`, 'kafka.Kafka', join(this.dir, 'server.properties')])
    p.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)))
    p.once('exit', () => {
      live.delete(p)
      if (this.proc === p) this.proc = undefined
    })
    this.proc = p
    live.add(p)
    const alive = () => this.proc === p
    try {
      await waitForPort(Number(this.address.split(':')[1]), 120_000, alive)
      await this.ready(alive)
    } catch (e) {
      throw new Error(`the Kafka broker did not come up (log: ${this.logFile}): ${(e as Error).message}\n${this.stderr}`)
    }
  }

  /** Waits until metadata and the group coordinator answer (the offsets topic then exists). */
  private async ready(alive: () => boolean): Promise<void> {
    const kafka = new Kafka({ brokers: [this.address], clientId: 'broker-ready', logLevel: logLevel.NOTHING, retry: { retries: 0 } })
    const admin = kafka.admin()
    const end = Date.now() + 120_000
    try {
      for (;;) {
        if (!alive()) throw new Error('the broker process exited')
        try {
          await admin.connect()
          await admin.describeCluster()
          await admin.fetchOffsets({ groupId: 'broker-ready', topics: [] })
          return
        } catch (e) {
          if (Date.now() > end) throw e
          await new Promise((r) => setTimeout(r, 200))
        }
      }
    } finally {
      await admin.disconnect().catch(() => undefined)
    }
  }

  /** Whether the broker process runs. */
  get running(): boolean {
    return this.proc !== undefined
  }

  /** Stops the broker gracefully (SIGTERM) and waits for its exit. */
  stop(): Promise<void> {
    return this.signal('SIGTERM')
  }

  /** Kills the broker (SIGKILL): no controlled shutdown; the next start recovers its logs. */
  kill(): Promise<void> {
    return this.signal('SIGKILL')
  }

  async restart(): Promise<void> {
    await this.stop()
    await this.start()
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc
    if (!p) return
    await this.adminClient?.disconnect().catch(() => undefined)
    this.adminClient = undefined
    const exited = new Promise<void>((r) => p.once('exit', () => r()))
    p.kill(sig)
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000)
    await exited
    clearTimeout(t)
  }

  /** Stops the broker and removes its folder. */
  async close(): Promise<void> {
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** A kafkajs client on the PLAINTEXT listener. */
  client(clientId = `test-${randomBytes(4).toString('hex')}`): Kafka {
    return new Kafka({ brokers: [this.address], clientId, logLevel: logLevel.NOTHING })
  }

  /** A connected admin client shared by the test (disconnected on stop). */
  async admin(): Promise<Admin> {
    if (!this.adminClient) {
      const a = this.client('test-admin').admin()
      await a.connect()
      this.adminClient = a
    }
    return this.adminClient
  }

  /** Creates a topic (waits for its leaders). */
  async createTopic(topic: string, partitions = 1, config: Record<string, string> = {}): Promise<void> {
    const configEntries: ITopicConfig['configEntries'] = Object.entries(config).map(([name, value]) => ({ name, value }))
    const admin = await this.admin()
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }] })
    // Metadata can name the leaders a moment before the partitions are served: wait for that too.
    const end = Date.now() + 30_000
    for (;;) {
      try {
        if ((await admin.fetchTopicOffsets(topic)).length === partitions) return
      } catch (e) {
        if (Date.now() > end) throw e
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** The committed offset of `group` on each partition of `topic` (-1 where none). */
  async committed(group: string, topic: string): Promise<number[]> {
    const [t] = await (await this.admin()).fetchOffsets({ groupId: group, topics: [topic] })
    const out: number[] = []
    for (const p of t?.partitions ?? []) out[p.partition] = Number(p.offset)
    return out
  }

  /** The end offset (high watermark) of each partition of `topic`. */
  async ends(topic: string): Promise<number[]> {
    const out: number[] = []
    for (const p of await (await this.admin()).fetchTopicOffsets(topic)) out[p.partition] = Number(p.high)
    return out
  }

  /** The broker's log (server.log) as text. */
  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : ''
  }
}

function saslProps(listener: string, users: KafkaUsers): Record<string, string> {
  const plainUsers = Object.entries(users)
    .map(([u, pw]) => `user_${u}="${pw}"`)
    .join(' ')
  return {
    [`listener.name.${listener}.sasl.enabled.mechanisms`]: 'PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
    [`listener.name.${listener}.plain.sasl.jaas.config`]: `org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
    [`listener.name.${listener}.scram-sha-256.sasl.jaas.config`]: 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    [`listener.name.${listener}.scram-sha-512.sasl.jaas.config`]: 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
  }
}

/** log4j2 configuration: everything at INFO into one file, authentication failures included. */
function log4j(file: string): string {
  return `Configuration:
  Appenders:
    File:
      name: F
      fileName: "${file}"
      PatternLayout: { pattern: "[%d] %p %m (%c)%n" }
  Loggers:
    Root: { level: INFO, AppenderRef: [{ ref: F }] }
    Logger:
      - { name: kafka.request.logger, level: WARN }
      - { name: org.apache.kafka.common.network.Selector, level: INFO }
`
}
