// (11) Cluster DDL (issue 13) on a meshed 3-node cluster under writes on all three nodes:
//
// - latency: POST /v1/cluster/ddl with ALTER TABLE ... ADD COLUMN on the written table, against
//   PUT /v1/cluster/replicaset/... of a fresh table (the two-phase baseline: one vote round, no
//   drain, no prepared statement) in the same run, repetitions interleaved; the figure is the
//   ratio of the two per repetition.
// - a table that holds rows on one node when it joins (copied to the other two behind the
//   fence): PUT /v1/cluster/replicaset/... of a table with COPY_ROWS rows on one node, against
//   the same call for an empty table, interleaved; the ratio per repetition.
// - the writers' wait: the longest writer transaction that overlapped a schema change (they
//   wait behind the fence while the cluster drains, then behind the prepared statement's lock);
//   writers failed with 40001 (cancelled in the fence) are retried and counted.
import { connect, TraktorCluster } from './cluster.mjs'
import { figure, percentile, round, say, throwIfInterrupted } from './util.mjs'

/** One writer per node: single-row inserts without pause; every transaction's span. */
function startWriters(c) {
  let running = true
  const spans = []
  let retried = 0
  let next = 1
  const loops = c.servers.map(async (server, i) => {
    const cl = await connect(server)
    try {
      while (running) {
        const t0 = performance.now()
        try {
          await cl.query('INSERT INTO bench.d (id, node) VALUES ($1, $2)', [
            i * 100_000_000 + next++,
            i,
          ])
          spans.push([t0, performance.now()])
        } catch (err) {
          if (err.code === '40001') retried++
          else throw err
        }
      }
    } finally {
      await cl.end().catch(() => undefined)
    }
  })
  return {
    spans,
    retried: () => retried,
    stop: async () => {
      running = false
      await Promise.all(loops)
    },
  }
}

/** The longest writer transaction that overlapped [from, to]. */
function longestDuring(spans, from, to) {
  let worst = 0
  for (const [a, b] of spans) if (b >= from && a <= to) worst = Math.max(worst, b - a)
  return worst
}

const COPY_ROWS = 100_000

export async function run(ctx) {
  const reps = ctx.quick ? 3 : 8
  say('ddl: starting 3 PostgreSQL servers and 3 arbiters')
  const c = await TraktorCluster.create(3, 'ddl')
  const ratios = []
  const ddlMs = []
  const addMs = []
  const rowsMs = []
  const copyRatios = []
  const waits = []
  let w
  try {
    await c.createTable('bench.d (id bigint PRIMARY KEY, node int NOT NULL)')
    for (let r = 0; r < reps; r++) {
      await c.createTable(`bench.a${r} (id int PRIMARY KEY)`)
      await c.createTable(`bench.r${r} (id int PRIMARY KEY, v text)`)
      const cl = await connect(c.servers[r % 3])
      await cl.query(
        `INSERT INTO bench.r${r} SELECT g, md5(g::text) FROM generate_series(1, ${COPY_ROWS}) g`,
      )
      await cl.end()
    }
    await c.startAll()
    await c.addToReplicaset('bench.d')
    await ctx.quiet('ddl')
    w = startWriters(c)
    for (let r = 0; r < reps; r++) {
      throwIfInterrupted()
      const got = {}
      const order = ['ddl', 'add', 'rows']
      for (const kind of [...order.slice(r % 3), ...order.slice(0, r % 3)]) {
        const t0 = performance.now()
        const res =
          kind === 'ddl'
            ? await c.api(r % 3, 'POST', '/v1/cluster/ddl', {
                sql: `ALTER TABLE bench.d ADD COLUMN c${r} int NOT NULL DEFAULT ${r}`,
              })
            : await c.api(
                r % 3,
                'PUT',
                `/v1/cluster/replicaset/bench.${kind === 'add' ? 'a' : 'r'}${r}`,
              )
        const t1 = performance.now()
        if (res.json?.outcome !== 'committed' || (kind === 'rows' && !res.json.copied))
          throw new Error(`${kind}: ${res.status} ${JSON.stringify(res.json)}`)
        got[kind] = t1 - t0
        if (kind === 'ddl') {
          // writers that started before the answer and were still running in it
          await new Promise((ok) => setTimeout(ok, 200))
          got.wait = longestDuring(w.spans, t0, t1)
        }
      }
      ddlMs.push(got.ddl)
      addMs.push(got.add)
      waits.push(got.wait)
      ratios.push(got.ddl / got.add)
      rowsMs.push(got.rows)
      copyRatios.push(got.rows / got.add)
      say(
        `ddl: rep ${r + 1}/${reps}: ddl ${Math.round(got.ddl)} ms, add ${Math.round(got.add)} ms, add with ${COPY_ROWS} rows ${Math.round(got.rows)} ms, longest writer ${Math.round(got.wait)} ms`,
      )
    }
  } finally {
    await w?.stop().catch(() => undefined)
    await c.stop()
  }
  const spans = w ? w.spans.map(([a, b]) => b - a) : []
  const med = (xs) => Math.round(percentile(xs, 50))
  ctx.record(
    figure({
      name: 'ddl: cluster DDL latency / replicaset add latency, under writes',
      unit: 'ratio',
      samples: ratios,
      digits: 2,
      target: { stat: 'p50', max: 3 },
      note: `3 nodes, a writer on each; ALTER TABLE ... ADD COLUMN ... DEFAULT via POST /v1/cluster/ddl p50 ${med(ddlMs)} ms against PUT /v1/cluster/replicaset (fresh table) p50 ${med(addMs)} ms, interleaved`,
    }),
  )
  ctx.record(
    figure({
      name: `ddl: replicaset add of a table with ${COPY_ROWS / 1000}k rows on one node / of an empty one`,
      unit: 'ratio',
      samples: copyRatios,
      digits: 2,
      note: `the rows copied to the other two nodes behind the fence before the table is published: p50 ${med(rowsMs)} ms against ${med(addMs)} ms for an empty table, interleaved, writers on another table`,
    }),
  )
  ctx.record(
    figure({
      name: 'ddl: longest writer transaction during a cluster DDL',
      unit: 'ms',
      samples: waits,
      target: { stat: 'p95', max: 1500 },
      note: `single-row inserts on all 3 nodes into the altered table; their p50 outside is ${round(percentile(spans, 50), 2)} ms; ${w?.retried() ?? 0} failed with 40001 (waiting in the fence when the statement needed the table) and were retried`,
    }),
  )
}
