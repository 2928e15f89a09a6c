// (8) Row-level last writer wins (resolver lww, the mesh default; issue 10), on a meshed
// 3-node cluster with arbiters at their default timings:
//
// - conflict resolve time, insert-insert and update-update: nodes A = 0 and B = 1 stop
//   subscribing to each other (DISABLE, and wait until their apply workers are gone), A writes
//   a key, then B writes it (B is the later writer), and the clock starts as both
//   subscriptions are enabled again. Resolved = every node holds B's row and no node has
//   anything queued (trktr.conflict_queue empty). Baseline: the skip resolver's healing time of
//   the same split brain (suite "conflict"), which loses B's or A's row instead.
// - data path with lww doing its work: the data-path benchmark's setup (the traktor mesh beside
//   the same mesh made by hand, repetitions interleaved) with an UPDATE load instead of
//   INSERTs: every node updates its own third of rows another node wrote, so the replica
//   trigger of every receiver looks at every update (the first one of each row is queued as a
//   change of writer and cleared by the resolution round). Throughput and lag ratios.
import { loadClients } from './bench-datapath.mjs'
import { applyCost } from './bench-lww-apply.mjs'
import { deleteCost } from './bench-lww-delete.mjs'
import { ManualMesh, TraktorCluster } from './cluster.mjs'
import { figure, percentile, round, say, sleep, throwIfInterrupted, waitFor } from './util.mjs'

const A = 0
const B = 1
const SUB = { [A]: `trktr_sub_${A}_${B}`, [B]: `trktr_sub_${B}_${A}` }
const DEADLINE_MS = 20_000
const CONNS = 8
const ROWS = 3000
const LAG_DEADLINE_MS = 120_000
const TABLE = 'bench.u (id int PRIMARY KEY, v text NOT NULL, rep int NOT NULL DEFAULT 0)'

/** Every node holds `v` for the key and has nothing queued. */
async function resolved(c, key, v) {
  for (let i = 0; i < c.size; i++) {
    const [r] = await c.sql(
      i,
      `SELECT (SELECT v FROM bench.k WHERE id = $1) AS v,
              (SELECT count(*)::int FROM trktr.conflict_queue) AS queued`,
      [key],
    )
    if (r?.v !== v || r.queued !== 0) return false
  }
  return true
}

async function splitBrain(c, key, writeA, writeB) {
  await c.cutApart(A, B)
  await writeA()
  await sleep(5)
  await writeB()
  await sleep(Math.random() * 500)
  const start = performance.now()
  await Promise.all([
    c.sql(A, `ALTER SUBSCRIPTION ${SUB[A]} ENABLE`),
    c.sql(B, `ALTER SUBSCRIPTION ${SUB[B]} ENABLE`),
  ])
  await waitFor(() => resolved(c, key, 'written on B'), DEADLINE_MS, `key ${key} resolved`, 5)
  return performance.now() - start
}

async function conflicts(ctx) {
  const runs = ctx.quick ? 5 : 10
  say('lww: starting 3 PostgreSQL servers and 3 arbiters (resolver lww)')
  const c = await TraktorCluster.create(3, 'lww')
  const ins = []
  const upd = []
  try {
    await c.createTable('bench.k (id int PRIMARY KEY, v text)')
    await c.startAll()
    await c.addToReplicaset('bench.k')
    await ctx.quiet('lww conflicts')
    for (let r = 0; r < runs; r++) {
      throwIfInterrupted()
      const key = 2 * r + 1
      ins.push(
        await splitBrain(
          c,
          key,
          () => c.sql(A, `INSERT INTO bench.k VALUES ($1, 'written on A')`, [key]),
          () => c.sql(B, `INSERT INTO bench.k VALUES ($1, 'written on B')`, [key]),
        ),
      )
      const hot = 2 * r + 2
      await c.sql(A, `INSERT INTO bench.k VALUES ($1, 'before')`, [hot])
      await waitFor(() => resolved(c, hot, 'before'), DEADLINE_MS, `key ${hot} everywhere`, 5)
      upd.push(
        await splitBrain(
          c,
          hot,
          () => c.sql(A, `UPDATE bench.k SET v = 'written on A' WHERE id = $1`, [hot]),
          () => c.sql(B, `UPDATE bench.k SET v = 'written on B' WHERE id = $1`, [hot]),
        ),
      )
      say(
        `lww: run ${r + 1}/${runs}: insert-insert ${Math.round(ins.at(-1))} ms, update-update ${Math.round(upd.at(-1))} ms`,
      )
    }
  } finally {
    await c.stop()
  }
  const note =
    'split brain on nodes A and B (B writes 5 ms later), from ENABLE of both subscriptions until all 3 nodes hold B’s row and no queue holds anything; checkIntervalMs 1000 (default). Baseline: suite conflict (resolver skip, which keeps a different row on A and B)'
  ctx.record(
    figure({
      name: 'lww: insert-insert conflict resolved on all nodes',
      unit: 'ms',
      samples: ins,
      target: { stat: 'p50', max: 1000 },
      note,
    }),
  )
  ctx.record(
    figure({
      name: 'lww: update-update conflict resolved on all nodes',
      unit: 'ms',
      samples: upd,
      target: { stat: 'p50', max: 1000 },
      note,
    }),
  )
}

/** One repetition of the update load: throughput, and lag until every node has every update. */
async function repetition(setup, rep, txPerNode) {
  const perConn = Math.ceil(txPerNode / CONNS)
  const total = setup.clients.length * CONNS * perConn
  await sleep(500)
  const start = performance.now()
  await Promise.all(
    setup.clients.flatMap((conns, node) =>
      conns.map(async (cl, k) => {
        // node n updates the rows id % 3 = n (written by node 0), connection k its own slice
        for (let j = 0; j < perConn; j++) {
          const slot = (k + CONNS * j) % (ROWS / 3)
          await cl.query({
            name: 'bench-update',
            text: 'UPDATE bench.u SET v = $2, rep = $3 WHERE id = $1',
            values: [3 * slot + node, `rep ${rep} node ${node} #${j}`, rep],
          })
        }
      }),
    ),
  )
  const end = performance.now()
  for (;;) {
    const counts = await Promise.all(
      setup.clients.map((_, i) =>
        setup.sql(i, 'SELECT count(*)::int AS n FROM bench.u WHERE rep = $1', [rep]),
      ),
    )
    const want = Math.min(ROWS, setup.clients.length * Math.min(ROWS / 3, CONNS * perConn))
    if (counts.every((r) => r[0].n === want)) break
    if (performance.now() - end > LAG_DEADLINE_MS)
      throw new Error(`${setup.name}: updates of repetition ${rep} missing`)
    await sleep(5)
  }
  return { tps: total / ((end - start) / 1000), lag: performance.now() - end, total }
}

async function dataPath(ctx) {
  const txPerNode = ctx.quick ? 6000 : 20000
  const order = Array.from({ length: ctx.quick ? 2 : 6 }, (_, i) =>
    i % 2 === 0 ? ['T', 'M'] : ['M', 'T'],
  ).flat()
  say('lww data path: a traktor mesh (lww) and a mesh by hand, 3 servers each')
  const t = await TraktorCluster.create(3, 'lwwdt')
  let m
  const open = []
  try {
    await t.createTable(TABLE)
    await t.startAll()
    await t.addToReplicaset('bench.u')
    m = await ManualMesh.create(3, 'lwwdm', TABLE)
    const setups = {
      T: { name: 'traktor (lww)', sql: (i, q, p) => t.sql(i, q, p), clients: [] },
      M: { name: 'by hand', sql: (i, q, p) => m.sql(i, q, p), clients: [] },
    }
    for (const [k, s] of Object.entries(setups)) {
      await s.sql(0, `INSERT INTO bench.u (id, v) SELECT g, 'seed' FROM generate_series(0, $1) g`, [
        ROWS - 1,
      ])
      await waitFor(
        async () =>
          (
            await Promise.all(
              [0, 1, 2].map((i) => s.sql(i, 'SELECT count(*)::int AS n FROM bench.u')),
            )
          ).every((r) => r[0].n === ROWS),
        60_000,
        `${k}: seed rows everywhere`,
      )
      s.clients = await loadClients(k === 'T' ? t.servers : m.servers)
      open.push(...s.clients.flat())
    }
    let rep = 0
    for (const k of ['T', 'M']) await repetition(setups[k], ++rep, 600)
    const results = { T: [], M: [] }
    for (const k of order) {
      throwIfInterrupted()
      await ctx.quiet(`lww data path ${setups[k].name}`)
      const r = await repetition(setups[k], ++rep, txPerNode)
      results[k].push(r)
      say(
        `lww data path: ${setups[k].name}: ${Math.round(r.tps)} tx/s, lag ${Math.round(r.lag)} ms`,
      )
    }
    const med = (k, f) => percentile(results[k].map(f), 50)
    const note = `${CONNS} connections per node, ${txPerNode} UPDATE transactions per node per repetition over ${ROWS} rows, order ${order.join('')}; baseline: the same mesh by hand`
    /** traktor / by hand, per repetition and of the medians, of one measure */
    const ratio = (what, f, unit, target) =>
      ctx.record(
        figure({
          name: `lww data path (updates): ${what} ratio traktor / by hand`,
          unit: 'ratio',
          samples: results.T.map((r, i) => f(r) / (results.M[i] ? f(results.M[i]) : Number.NaN)),
          digits: 3,
          target,
          note: `ratio of the medians ${round(med('T', f) / med('M', f), 3)} (traktor ${Math.round(med('T', f))} ${unit}, by hand ${Math.round(med('M', f))} ${unit}). ${note}`,
        }),
      )
    ratio('throughput', (r) => r.tps, 'tx/s', { stat: 'p50', min: 0.98 })
    ratio('lag', (r) => r.lag, 'ms', { stat: 'p50', max: 1.2 })
  } finally {
    await Promise.allSettled(open.map((c) => c.end()))
    await m?.stop()
    await t.stop()
  }
}

export async function run(ctx) {
  await conflicts(ctx)
  await dataPath(ctx)
  await applyCost(ctx)
  await deleteCost(ctx)
}
