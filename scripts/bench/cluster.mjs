// Clusters for the benchmarks, built from the compiled code in dist/: real PostgreSQL 17
// servers (the embedded harness, fast settings as in the tests and the demo) and real arbiter
// processes (`node bin/traktor.js start --config FILE`, defaults for every timing), meshed from
// node 0's address. Everything listens on 127.0.0.1. Each object stops what it started and is
// registered for clean-up, so an error or Ctrl-C stops it too. The soak builds its cluster
// here too, from a snapshot of the compiled code (`code`), with one-shot SQL connections (its
// servers restart under it) and a hook for arbiters that exit on their own.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { writePskFile } from '../../dist/mesh/keys.js'
import * as distEmbedded from '../../dist/postgres/embedded.js'
import { shebangFlags } from '../node-flags.mjs'
import { bodyOf, freePort, GiveUp, onCleanup, sleep, trackChild, waitFor } from './util.mjs'

const ROOT = path.resolve(import.meta.dirname, '../..')
/** the code under test: the CLI and the embedded PostgreSQL harness (of dist/ by default) */
const DIST_CODE = { bin: path.join(ROOT, 'bin', 'traktor.js'), embedded: distEmbedded }
export const DB = 'app'
export const ROLE = 'traktor_arbiter'
export const PASSWORD = 'traktor'
export const API_KEY = 'bench-key'

/** A persistent superuser connection to the benchmark database of one server. */
export async function connect(server, dbname = DB, extra = {}) {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: server.port,
    database: dbname,
    user: server.superuser,
    password: server.superPassword,
    application_name: 'traktor-bench',
    ...extra,
  })
  client.on('error', () => {})
  await client.connect()
  return client
}

/**
 * Start n servers; each has database `app` and a persistent superuser client to it. `durable`:
 * PostgreSQL's own defaults (fsync, synchronous_commit, full_page_writes on) instead of the
 * harness's fast settings.
 */
export async function startDatabases(
  n,
  name,
  { startServers, destroyServers } = distEmbedded,
  { durable = false } = {},
) {
  const ports = []
  for (let i = 0; i < n; i++) ports.push(await freePort())
  const servers = await startServers(n, (i) => ({
    name: `${name}${i}`,
    fast: !durable,
    port: ports[i],
  }))
  const unregister = onCleanup(() => destroyServers(servers))
  try {
    await Promise.all(servers.map((s) => s.query(`CREATE DATABASE ${DB}`)))
    const clients = await Promise.all(servers.map((s) => connect(s)))
    return { servers, clients, unregister }
  } catch (err) {
    unregister()
    await destroyServers(servers)
    throw err
  }
}

/** One arbiter process, its log appended to one file per node. */
class ArbiterProcess {
  constructor(proc, url, logFile, onUnexpectedExit) {
    this.proc = proc
    this.pid = proc.pid
    this.url = url
    this.logFile = logFile
    this.expectedExit = false
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    )
    this.exited.then((r) => {
      if (!this.expectedExit) onUnexpectedExit?.(r)
    })
    this.unregister = onCleanup(() => this.stop())
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** Stop it with `signal`, SIGKILL after `killAfterMs`: {code, signal, ms}. */
  async stop(signal = 'SIGTERM', killAfterMs = 10_000) {
    this.unregister()
    this.expectedExit = true
    const start = Date.now()
    if (this.running) this.proc.kill(signal)
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), killAfterMs)
    const r = await this.exited
    clearTimeout(timer)
    return { ...r, ms: Date.now() - start }
  }

  /** The last `n` warn/error lines of its log (and its start markers), for failure messages. */
  problems(n = 10) {
    try {
      return fs
        .readFileSync(this.logFile, 'utf8')
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l) || l.startsWith('==='))
        .slice(-n)
        .join('\n')
    } catch {
      return ''
    }
  }
}

/** N PostgreSQL servers with arbiters in mesh mode (started one by one with startArbiter). */
export class TraktorCluster {
  /**
   * Cut nodes a and b apart (each stops applying the other's changes) and wait until both apply
   * workers are gone, so that what each writes next is a true split brain.
   */
  async cutApart(a, b) {
    const sub = (i, o) => `trktr_sub_${i}_${o}`
    await this.sql(a, `ALTER SUBSCRIPTION ${sub(a, b)} DISABLE`)
    await this.sql(b, `ALTER SUBSCRIPTION ${sub(b, a)} DISABLE`)
    const gone = async (i, o) =>
      (
        await this.sql(
          i,
          `SELECT 1 FROM pg_stat_subscription w JOIN pg_subscription s ON s.oid = w.subid
           WHERE s.subname = $1 AND w.pid IS NOT NULL`,
          [sub(i, o)],
        )
      ).length === 0
    await waitFor(
      async () => (await gone(a, b)) && (await gone(b, a)),
      10_000,
      'apply workers to stop',
      10,
    )
  }

  /**
   * `extra`: config keys every node gets besides the defaults (e.g. a resolver). `opts`:
   * `code` ({bin, embedded}: the code under test, dist/ by default), `apiKey`, `password`,
   * `schema` (created on every node, owned by the arbiter role), `oneShotSql` (a connection per
   * statement, for servers that restart), `onExit(i, arbiter, {code, signal})` (an arbiter
   * exited unasked), `beforeTeardown()` (arbiters stopped, servers not yet), `durable`
   * (PostgreSQL's durable defaults, fsync on).
   */
  static async create(n, name, extra = {}, opts = {}) {
    const c = new TraktorCluster(name, opts)
    c.extra = extra
    c.unregister = onCleanup(() => c.stop())
    try {
      await writePskFile(c.pskFile)
      const { servers, clients, unregister } = await startDatabases(n, name, c.code.embedded, {
        durable: opts.durable === true,
      })
      unregister() // the cluster stops them
      c.servers.push(...servers)
      if (c.oneShotSql) await Promise.all(clients.map((cl) => cl.end()))
      else c.clients.push(...clients)
      for (let i = 0; i < n; i++) await c.prepareNode(i)
      return c
    } catch (err) {
      await c.stop()
      throw err
    }
  }

  constructor(name, opts = {}) {
    this.name = name
    this.code = opts.code ?? DIST_CODE
    this.apiKey = opts.apiKey ?? API_KEY
    this.password = opts.password ?? PASSWORD
    this.schema = opts.schema ?? 'bench'
    this.oneShotSql = opts.oneShotSql ?? false
    this.onExit = opts.onExit
    this.beforeTeardown = opts.beforeTeardown
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `traktor-bench-${name}-`))
    this.pskFile = path.join(this.dir, 'swarm.key')
    this.servers = []
    this.clients = []
    this.nodes = []
    this.arbiters = []
  }

  get size() {
    return this.servers.length
  }

  /** One more server, prepared like the others (for a join). Returns its node id. */
  async addServer() {
    const { servers, clients, unregister } = await startDatabases(
      1,
      `${this.name}x`,
      this.code.embedded,
    )
    unregister()
    this.servers.push(servers[0])
    if (this.oneShotSql) await clients[0].end()
    else this.clients.push(clients[0])
    const id = this.servers.length - 1
    await this.prepareNode(id)
    return id
  }

  /** As an operator would: a SUPERUSER arbiter role (traktor drops it) and a schema. */
  async prepareNode(i) {
    const s = this.servers[i]
    await s.query(`CREATE USER ${ROLE} PASSWORD '${this.password}' SUPERUSER`)
    await s.query(`CREATE SCHEMA ${this.schema} AUTHORIZATION ${ROLE}`, [], { dbname: DB })
    const meshPort = await freePort()
    const apiPort = await freePort()
    const nodeDir = path.join(this.dir, `node${i}`)
    fs.mkdirSync(nodeDir)
    const bootstrap = i === 0 ? [] : [`/ip4/127.0.0.1/tcp/${this.nodes[0].meshPort}`]
    this.nodes[i] = {
      id: i,
      apiPort,
      meshPort,
      dir: nodeDir,
      url: `http://127.0.0.1:${apiPort}`,
      // every timing at its default: checkIntervalMs 1000, heartbeat 500, suspect 1000, dead 2000
      config: {
        nodeId: i,
        postgres: `host=127.0.0.1 port=${s.port} dbname=${DB} user=${ROLE} password=${this.password}`,
        peerPassword: this.password,
        api: { listen: `127.0.0.1:${apiPort}`, apiKey: this.apiKey },
        mesh: {
          listen: [`/ip4/127.0.0.1/tcp/${meshPort}`],
          bootstrap,
          identityFile: path.join(nodeDir, 'peer.key'),
          pskFile: this.pskFile,
          cluster: this.schema,
        },
        logLevel: 'info',
        ...this.extra,
      },
    }
  }

  /** Create a table on every node (or the given ones), owned by the arbiter role. */
  async createTable(def, ids = this.servers.map((_, i) => i)) {
    await Promise.all(
      ids.map((i) =>
        this.sql(i, `CREATE TABLE ${def}; ALTER TABLE ${tableOf(def)} OWNER TO ${ROLE}`),
      ),
    )
  }

  /** SQL as the superuser on node i's database: its rows. */
  async sql(i, text, params = []) {
    if (!this.oneShotSql) return (await this.clients[i].query(text, params)).rows
    const client = await connect(this.servers[i], DB, {
      connectionTimeoutMillis: 5000,
      query_timeout: 30_000,
    })
    try {
      return (await client.query(text, params)).rows
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  /** Spawn the arbiter of node i; resolves once its /healthz answers unless `wait` is false. */
  async startArbiter(i, { wait = true, waitMs = 30_000 } = {}) {
    const node = this.nodes[i]
    const file = path.join(node.dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify(node.config, null, 2))
    const logFile = path.join(node.dir, 'arbiter.log')
    fs.appendFileSync(logFile, `=== arbiter ${i} started at ${new Date().toISOString()} ===\n`)
    const fd = fs.openSync(logFile, 'a')
    // TRAKTOR_ARBITER_NODE_FLAGS: node flags for the arbiters (idle-profile.mjs passes
    // --cpu-prof, which NODE_OPTIONS does not allow)
    const flags = process.env.TRAKTOR_ARBITER_NODE_FLAGS?.split(' ').filter(Boolean) ?? []
    const shipped = shebangFlags(this.code.bin) // as `npx traktor start` runs it
    const proc = spawn(
      process.execPath,
      [...shipped, ...flags, this.code.bin, 'start', '--config', file],
      {
        stdio: ['ignore', fd, fd],
      },
    )
    fs.closeSync(fd)
    trackChild(proc)
    const a = new ArbiterProcess(proc, node.url, logFile, (r) => this.onExit?.(i, a, r))
    this.arbiters[i] = a
    if (wait) await this.waitHealthy(i, waitMs)
    return a
  }

  /** Is node i's arbiter running? */
  arbiterRunning(i) {
    return this.arbiters[i]?.running ?? false
  }

  async waitHealthy(i, ms = 30_000) {
    const a = this.arbiters[i]
    await waitFor(
      async () => {
        if (!a.running) throw new GiveUp(`arbiter ${i} exited:\n${a.problems()}`)
        const r = await fetch(`${a.url}/healthz`).catch(() => undefined)
        return r !== undefined
      },
      ms,
      `arbiter ${i} /healthz`,
      20,
    )
  }

  /** Call the REST API of node i with the key; JSON in and out. */
  async api(i, method, route, body, timeoutMs = 60_000) {
    const r = await fetch(`${this.nodes[i].url}${route}`, {
      method,
      headers: {
        'X-API-KEY': this.apiKey,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    })
    return { status: r.status, json: await bodyOf(r) }
  }

  /** Every listed node sees every other listed node alive and ready. */
  async waitMeshed(ids, ms = 60_000) {
    for (const id of ids) {
      await waitFor(
        async () => {
          const r = await this.api(id, 'GET', '/v1/cluster/nodes', undefined, 5000)
          const nodes = r.json?.nodes ?? []
          return ids.every((o) =>
            nodes.some((n) => n.node === o && n.state === 'alive' && n.join_state === 'ready'),
          )
        },
        ms,
        `node ${id} to see ${ids.join(',')} alive and ready`,
      ).catch((err) => {
        throw new Error(`${err.message}\n${this.arbiters[id]?.problems() ?? ''}`, { cause: err })
      })
    }
  }

  /** Every listed node has an enabled subscription to every other listed node. */
  async waitSubscribed(ids, ms = 60_000) {
    await waitFor(async () => (await this.subscribedAll(ids)) === true, ms, 'every subscription')
  }

  /** true when every listed node subscribes (enabled) to every other listed node. */
  async subscribedAll(ids) {
    const checks = await Promise.all(
      ids.map(async (id) => {
        const subs = await this.sql(id, `SELECT subname FROM pg_subscription WHERE subenabled`)
        const names = new Set(subs.map((s) => s.subname))
        return ids.every((o) => o === id || names.has(`trktr_sub_${id}_${o}`))
      }),
    )
    return checks.every(Boolean)
  }

  /** Start arbiters 0..n-1 (node 0 first: it is everyone's bootstrap) and wait for the mesh. */
  async startAll(ids = this.servers.map((_, i) => i)) {
    await this.startArbiter(ids[0])
    await Promise.all(ids.slice(1).map((i) => this.startArbiter(i)))
    await this.waitMeshed(ids)
    await this.waitSubscribed(ids)
  }

  /** Add a table to the replicaset with one cluster call; throws unless committed. */
  async addToReplicaset(table, via = 0) {
    const r = await this.api(via, 'PUT', `/v1/cluster/replicaset/${table}`)
    if (r.status !== 201 && r.json?.outcome !== 'unchanged') {
      throw new Error(`PUT ${table}: ${r.status} ${JSON.stringify(r.json)}`)
    }
    return r
  }

  async stop() {
    this.unregister?.()
    await Promise.allSettled(this.arbiters.filter(Boolean).map((a) => a.stop()))
    await Promise.resolve(this.beforeTeardown?.()).catch(() => undefined)
    await Promise.allSettled(this.clients.map((c) => c.end()))
    await this.code.embedded.destroyServers(this.servers)
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

function tableOf(def) {
  return def.trim().split(/\s|\(/)[0]
}

/**
 * The same mesh made by hand, no arbiter: on each server a publication of the table and an
 * origin = none subscription to every other server, with the options traktor uses.
 */
export class ManualMesh {
  static async create(n, name, tableDef) {
    const m = new ManualMesh()
    m.unregister = onCleanup(() => m.stop())
    try {
      await m.build(n, name, tableDef)
      return m
    } catch (err) {
      await m.stop()
      throw err
    }
  }

  constructor() {
    this.servers = []
    this.clients = []
  }

  async build(n, name, tableDef) {
    const { servers, clients, unregister } = await startDatabases(n, name)
    unregister()
    this.servers = servers
    this.clients = clients
    const table = tableOf(tableDef)
    for (const c of clients) {
      await c.query(`CREATE SCHEMA bench; CREATE TABLE ${tableDef}`)
      await c.query(`CREATE PUBLICATION bench_pub FOR TABLE ${table}`)
    }
    // one at a time: a CREATE SUBSCRIPTION waits for the publisher's running transactions
    for (const [i, c] of clients.entries()) {
      for (const [j, s] of servers.entries()) {
        if (i === j) continue
        const conn = `host=127.0.0.1 port=${s.port} dbname=${DB} user=${s.superuser} password=${s.superPassword}`
        await c.query(
          `CREATE SUBSCRIPTION sub_${i}_${j} CONNECTION '${conn}' PUBLICATION bench_pub
           WITH (origin = none, copy_data = false, disable_on_error = true)`,
        )
      }
    }
    await waitFor(
      async () => {
        for (const c of clients) {
          const { rows } = await c.query(
            `SELECT count(*)::int AS n FROM pg_stat_subscription WHERE relid IS NULL AND pid IS NOT NULL`,
          )
          if (rows[0].n !== n - 1) return false
        }
        return true
      },
      30_000,
      'every hand-made subscription running',
    )
  }

  sql(i, text, params = []) {
    return this.clients[i].query(text, params).then((r) => r.rows)
  }

  async stop() {
    this.unregister?.()
    await Promise.allSettled(this.clients.map((c) => c.end()))
    await distEmbedded.destroyServers(this.servers)
  }
}

export { sleep }
