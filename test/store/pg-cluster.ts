/**
 * A PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port, data and socket in a temp
 * folder owned by the postgres user), for tests that stop and start the database or need password
 * authentication, which the system server on 5432 (trust) does not give.
 */
import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../connectors/mqtt/broker.js'

const run = promisify(execFile)

function pgBin(name: string): string {
  const root = '/usr/lib/postgresql'
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  for (const v of versions) if (existsSync(join(root, v, 'bin', name))) return join(root, v, 'bin', name)
  throw new Error(`no ${name} under ${root}`)
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [{ stdout: uid }, { stdout: gid }] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) }
}

const asPostgres = (cmd: string, args: string[]) => run('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: 120_000 })

export interface PgCluster {
  readonly port: number
  /** postgres://postgres[:password]@127.0.0.1:<port>/postgres */
  readonly url: string
  stop(): Promise<void>
  start(): Promise<void>
  /** Stops the cluster and removes its folder. Idempotent. */
  close(): Promise<void>
}

/** Initialises and starts a cluster; with `password` it requires that password (scram-sha-256). */
export async function startPgCluster(opts: { password?: string } = {}): Promise<PgCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'))
  const { uid, gid } = await postgresIds()
  chownSync(dir, uid, gid)
  const data = join(dir, 'data')
  const initArgs = ['-D', data, '-U', 'postgres', '--no-sync', '-E', 'UTF8']
  if (opts.password !== undefined) {
    const pwfile = join(dir, 'pw')
    writeFileSync(pwfile, `${opts.password}\n`, { mode: 0o600 })
    chownSync(pwfile, uid, gid)
    initArgs.push('-A', 'scram-sha-256', `--pwfile=${pwfile}`)
  } else initArgs.push('-A', 'trust')
  await asPostgres(pgBin('initdb'), initArgs)
  const port = await freePort()
  const pgCtl = pgBin('pg_ctl')
  let closed = false
  const cluster: PgCluster = {
    port,
    url: `postgres://postgres${opts.password !== undefined ? `:${encodeURIComponent(opts.password)}` : ''}@127.0.0.1:${port}/postgres`,
    start: async () => {
      await asPostgres(pgCtl, [
        '-D',
        data,
        '-l',
        join(dir, 'log'),
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
        'start',
      ])
    },
    stop: async () => {
      await asPostgres(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'])
    },
    close: async () => {
      if (closed) return
      closed = true
      await asPostgres(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await cluster.start()
  return cluster
}
