// (4) Data path overhead: the same pgbench-style write load through a traktor-managed 3-node
// mesh (arbiters running) and through the same mesh made by hand (CREATE PUBLICATION /
// CREATE SUBSCRIPTION ... WITH (origin = none, copy_data = false, disable_on_error = true) on
// three fresh servers, no arbiter). Both setups run side by side in one process, repetitions
// interleaved T M M T T M ... (6 pairs; 2 with --quick).
//
// One repetition: on each of the 3 nodes at once, CONNS connections each run a fixed share of
// TX single-row INSERT transactions (autocommit, a prepared statement, a random UUID text key)
// — throughput = all transactions / time until the last client is done. Replication lag = from
// that moment until every node has every row of the repetition. The CPU used during the load
// by this benchmark's processes and by everything else on the machine is kept beside each.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { DB, ManualMesh, TraktorCluster } from './cluster.mjs'
import { otherLoad } from './procstat.mjs'
import { figure, percentile, round, say, sleep, throwIfInterrupted } from './util.mjs'

const CONNS = 8
const TABLE =
  'bench.load (id text PRIMARY KEY, rep int NOT NULL, node int NOT NULL, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())'
const INDEX = 'CREATE INDEX load_rep ON bench.load (rep)'
const INSERT = {
  name: 'bench-insert',
  text: 'INSERT INTO bench.load (id, rep, node, payload) VALUES ($1, $2, $3, $4)',
}
const PAYLOAD = 'x'.repeat(100)
const LAG_DEADLINE_MS = 120_000

export async function loadClients(servers) {
  return await Promise.all(
    servers.map(async (s) => {
      const list = []
      for (let k = 0; k < CONNS; k++) {
        const c = new pg.Client({
          host: '127.0.0.1',
          port: s.port,
          database: DB,
          user: s.superuser,
          password: s.superPassword,
          application_name: 'traktor-bench-load',
        })
        c.on('error', () => {})
        await c.connect()
        list.push(c)
      }
      return list
    }),
  )
}

/** One repetition on one setup: throughput and lag. */
async function repetition(setup, rep, txPerNode) {
  const perConn = Math.ceil(txPerNode / CONNS)
  const total = setup.clients.length * CONNS * perConn
  await Promise.all(setup.clients.map((_, i) => setup.sql(i, 'CHECKPOINT')))
  await sleep(500)
  const load = otherLoad()
  const start = performance.now()
  await Promise.all(
    setup.clients.flatMap((conns, node) =>
      conns.map(async (c) => {
        for (let k = 0; k < perConn; k++) {
          await c.query({ ...INSERT, values: [randomUUID(), rep, node, PAYLOAD] })
        }
      }),
    ),
  )
  const end = performance.now()
  const cpu = load.stop()
  for (;;) {
    const counts = await Promise.all(
      setup.clients.map((_, i) =>
        setup.sql(i, 'SELECT count(*)::int AS n FROM bench.load WHERE rep = $1', [rep]),
      ),
    )
    if (counts.every((r) => r[0].n === total)) break
    if (performance.now() - end > LAG_DEADLINE_MS) {
      throw new Error(
        `${setup.name}: rows of repetition ${rep} missing after ${LAG_DEADLINE_MS} ms`,
      )
    }
    await sleep(5)
  }
  const lag = performance.now() - end
  return {
    tps: total / ((end - start) / 1000),
    lag,
    total,
    oursCpuPercent: cpu.oursCpuPercent,
    othersCpuPercent: cpu.othersCpuPercent,
  }
}

export async function run(ctx) {
  const txPerNode = ctx.quick ? 8000 : 30000
  // ABBA pairs, so that a slow drift of the machine hits both setups alike
  const pairCount = ctx.quick ? 2 : 6
  const order = Array.from({ length: pairCount }, (_, i) =>
    i % 2 === 0 ? ['T', 'M'] : ['M', 'T'],
  ).flat()
  say('data path: starting 3 servers with arbiters and 3 servers meshed by hand')
  const t = await TraktorCluster.create(3, 'dpt')
  let m
  const open = []
  try {
    await t.createTable(TABLE)
    await Promise.all([0, 1, 2].map((i) => t.sql(i, INDEX)))
    await t.startAll()
    await t.addToReplicaset('bench.load')
    m = await ManualMesh.create(3, 'dpm', TABLE)
    await Promise.all([0, 1, 2].map((i) => m.sql(i, INDEX)))
    const setups = {
      T: {
        name: 'traktor',
        sql: (i, q, p) => t.sql(i, q, p),
        clients: await loadClients(t.servers),
      },
      M: {
        name: 'by hand',
        sql: (i, q, p) => m.sql(i, q, p),
        clients: await loadClients(m.servers),
      },
    }
    open.push(...setups.T.clients.flat(), ...setups.M.clients.flat())
    // warm-up, not counted
    let rep = 0
    for (const k of ['T', 'M']) await repetition(setups[k], ++rep, 500)
    const results = { T: [], M: [] }
    const sampler = ctx.footprint('data path load (4)', t.arbiters[0].pid)
    sampler.pause()
    for (const k of order) {
      throwIfInterrupted()
      await ctx.quiet(`data path ${setups[k].name}`)
      if (k === 'T') sampler.resume()
      const r = await repetition(setups[k], ++rep, txPerNode)
      sampler.pause()
      results[k].push(r)
      say(
        `data path: ${setups[k].name}: ${Math.round(r.tps)} tx/s, lag ${Math.round(r.lag)} ms (${r.total} rows; CPU: this benchmark ${r.oursCpuPercent} %, other processes ${r.othersCpuPercent} %)`,
      )
      await sleep(1000)
    }
    sampler.end()
    const tps = (k) => results[k].map((r) => r.tps)
    const lag = (k) => results[k].map((r) => r.lag)
    const median = (xs) => percentile(xs, 50)
    // ratio per interleaved pair (T with its neighbouring M), and of the medians
    const pairs = results.T.map((r, i) => r.tps / (results.M[i]?.tps ?? Number.NaN))
    const ratio = median(tps('T')) / median(tps('M'))
    const note = `${CONNS} connections per node, ${txPerNode} INSERT transactions per node per repetition, order ${order.join('')}`
    ctx.record(
      figure({
        name: 'data path: throughput ratio traktor / by hand',
        unit: 'ratio',
        samples: pairs,
        digits: 3,
        target: { stat: 'p50', min: 0.98 },
        note: `p50/p95 over interleaved pairs; ratio of the medians ${round(ratio, 3)}. ${note}`,
        extra: {
          ratioOfMedians: round(ratio, 3),
          othersCpuPercentPerRepetition: {
            traktor: results.T.map((r) => r.othersCpuPercent),
            byHand: results.M.map((r) => r.othersCpuPercent),
          },
          benchmarkCpuPercentPerRepetition: {
            traktor: results.T.map((r) => r.oursCpuPercent),
            byHand: results.M.map((r) => r.oursCpuPercent),
          },
        },
      }),
    )
    const lagPairs = results.T.map((r, i) => r.lag / (results.M[i]?.lag ?? Number.NaN))
    ctx.record(
      figure({
        name: 'data path: replication lag ratio traktor / by hand',
        unit: 'ratio',
        samples: lagPairs,
        digits: 3,
        target: { stat: 'p50', max: 1.2 },
        note: `p50/p95 over interleaved pairs; ratio of the medians ${round(median(lag('T')) / median(lag('M')), 3)}; resolver lww (the mesh default). ${note}`,
      }),
    )
    ctx.record(
      figure({
        name: 'data path: throughput, traktor mesh',
        unit: 'tx/s',
        samples: tps('T'),
        digits: 0,
        note,
      }),
    )
    ctx.record(
      figure({
        name: 'data path: throughput, mesh by hand',
        unit: 'tx/s',
        samples: tps('M'),
        digits: 0,
        note,
      }),
    )
    ctx.record(
      figure({
        name: 'data path: replication lag, traktor mesh',
        unit: 'ms',
        samples: lag('T'),
        digits: 0,
        note: 'from the end of the load until every node has every row',
      }),
    )
    ctx.record(
      figure({
        name: 'data path: replication lag, mesh by hand',
        unit: 'ms',
        samples: lag('M'),
        digits: 0,
        note: 'from the end of the load until every node has every row',
      }),
    )
  } finally {
    await Promise.allSettled(open.map((c) => c.end()))
    await m?.stop()
    await t.stop()
  }
}
