// What the arbiters cost the data path (issue 10), measured in ONE cluster: a 3-node traktor
// mesh under the data-path insert load (8 connections per node, single-row INSERTs), in
// windows with the arbiters running and SIGSTOPped in turn (S R R S S R R S ...: a slow drift
// of the machine hits both alike). The data-path suite compares two clusters, whose pairs swing
// ±4 %; this compares the same servers with and without their arbiters' activity. Prints each
// window (throughput, the arbiters' CPU and context switches from /proc/<pid>/sched) and the
// ratio of the means. A tool for a person, not a benchmark:
//   node scripts/bench/arbiter-cost.mjs [windows=8] [seconds=4]
// TRAKTOR_COST_HEARTBEAT_MS=<ms> runs the arbiters with that mesh heartbeat (liveness probe
// period; suspect and dead after 4 and 8 of them).
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import { loadClients } from './bench-datapath.mjs'
import { TraktorCluster } from './cluster.mjs'
import { sleep } from './util.mjs'

const WINDOWS = Number(process.argv[2] ?? 8)
const SECONDS = Number(process.argv[3] ?? 4)
const HEARTBEAT_MS = Number(process.env.TRAKTOR_COST_HEARTBEAT_MS ?? 0)
const TABLE =
  'bench.load (id text PRIMARY KEY, rep int NOT NULL, node int NOT NULL, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())'
const INSERT = {
  name: 'cost-insert',
  text: 'INSERT INTO bench.load (id, rep, node, payload) VALUES ($1, 1, $2, $3)',
}

/** CPU time (ms) and context switches of a process's main thread */
function sched(pid) {
  try {
    const t = fs.readFileSync(`/proc/${pid}/sched`, 'utf8')
    const field = (k) => Number(t.match(new RegExp(`^${k}\\s*:\\s*([\\d.]+)`, 'm'))?.[1] ?? 0)
    return { ms: field('se.sum_exec_runtime'), switches: field('nr_switches') }
  } catch {
    return { ms: 0, switches: 0 }
  }
}

const c = await TraktorCluster.create(3, 'cost')
try {
  await c.createTable(TABLE)
  if (HEARTBEAT_MS > 0) {
    for (const node of c.nodes) {
      Object.assign(node.config.mesh, {
        heartbeatMs: HEARTBEAT_MS,
        suspectAfterMs: 4 * HEARTBEAT_MS,
        deadAfterMs: 8 * HEARTBEAT_MS,
      })
    }
  }
  await c.startAll()
  await c.addToReplicaset('bench.load')
  const clients = await loadClients(c.servers)
  const arbiters = () =>
    c.arbiters.reduce(
      (sum, a) => {
        const s = sched(a.pid)
        return { ms: sum.ms + s.ms, switches: sum.switches + s.switches }
      },
      { ms: 0, switches: 0 },
    )
  const tps = { running: [], stopped: [] }
  // window 0 warms up and is not counted
  for (let w = 0; w <= WINDOWS; w++) {
    const stopped = w > 0 && (w % 4 === 1 || w % 4 === 0)
    if (stopped) for (const a of c.arbiters) process.kill(a.pid, 'SIGSTOP')
    const before = arbiters()
    const end = Date.now() + SECONDS * 1000
    let n = 0
    await Promise.all(
      clients.flatMap((conns, node) =>
        conns.map(async (client) => {
          while (Date.now() < end) {
            await client.query({ ...INSERT, values: [randomUUID(), node, 'x'.repeat(100)] })
            n++
          }
        }),
      ),
    )
    const after = arbiters()
    if (stopped) for (const a of c.arbiters) process.kill(a.pid, 'SIGCONT')
    const rate = Math.round(n / SECONDS)
    if (w > 0) tps[stopped ? 'stopped' : 'running'].push(rate)
    const cpu = ((after.ms - before.ms) / SECONDS / 10).toFixed(2)
    const sw = Math.round((after.switches - before.switches) / SECONDS)
    console.log(
      `window ${w}: arbiters ${stopped ? 'stopped' : 'running'}, ${rate} tx/s; the three arbiters: ${cpu} % of a core, ${sw} context switches/s`,
    )
    await sleep(1000)
  }
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
  const ratio = mean(tps.running) / mean(tps.stopped)
  console.log(
    `throughput with the arbiters running / stopped: ${ratio.toFixed(3)} (means ${Math.round(mean(tps.running))} / ${Math.round(mean(tps.stopped))} tx/s over ${WINDOWS} windows of ${SECONDS} s${HEARTBEAT_MS ? `; heartbeat ${HEARTBEAT_MS} ms` : ''})`,
  )
  for (const client of clients.flat()) await client.end()
} finally {
  await c.stop()
}
