// (5) The consistency check (issue 11) on a meshed 3-node cluster with a 1M-row table:
//   - a check of the table (GET /v1/cluster/check/{table}, the HTTP round trip: every node
//     hashes its copy, the coordinator compares), against a plain
//     `SELECT md5(string_agg(t::text, '' ORDER BY id))` of the same table on one node — what a
//     hand-made comparison costs per node before any transfer;
//   - a repair of 1,000 differing keys (POST .../repair: the check that finds them, narrowing,
//     the sync rounds, the row images, the origin-tagged writes on two nodes, the re-check);
//   - what the background check costs writers: single-row updates of a replicated 10,000-row
//     table on node 1 for WINDOW_MS with node 0's arbiter running the background check back to back
//     (checkEveryMs 1000; paced to a 5 % duty cycle) and without it (checkEveryMs 0, the
//     arbiter restarted between), windows alternating; the ratio is per adjacent pair.
// The table is filled identically on every node before it joins the replicaset (no copy
// through replication), with fixed values so the rows are byte-identical.
import pg from 'pg'
import { DB, TraktorCluster } from './cluster.mjs'
import { figure, round, say, throwIfInterrupted } from './util.mjs'

const TABLE = 'bench.c'
const DEF = `${TABLE} (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric)`
const FILL = `
INSERT INTO bench.c
SELECT g, g % 1000, md5(g::text) || ' some payload text',
       '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second', g * 1.5
FROM generate_series(1, $1::int) g`
const ROWS_FULL = 1_000_000
const ROWS_QUICK = 200_000
const DIFFERING = 1000
const WRITERS = 4
const W_ROWS = 10_000
// a background cycle over the 1M-row table is one scan (~2.5 s here) and a 19× pause: a
// window must hold a whole cycle to see the average cost, not a random part of one
const WINDOW_MS = 50_000

/** Updates per second of bench.w on node `i` over WINDOW_MS, WRITERS connections. */
async function writeRate(c, i) {
  const s = c.servers[i]
  const clients = await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const cl = new pg.Client({
        host: '127.0.0.1',
        port: s.port,
        database: DB,
        user: s.superuser,
        password: s.superPassword,
        application_name: 'traktor-bench-writer',
      })
      cl.on('error', () => {})
      await cl.connect()
      return cl
    }),
  )
  let n = 0
  const until = performance.now() + WINDOW_MS
  const t0 = performance.now()
  await Promise.all(
    clients.map(async (cl) => {
      while (performance.now() < until) {
        await cl.query({
          name: 'bench-w',
          text: 'UPDATE bench.w SET v = $2 WHERE id = $1',
          values: [1 + Math.floor(Math.random() * W_ROWS), `writer ${n}`],
        })
        n++
      }
    }),
  )
  const rate = n / ((performance.now() - t0) / 1000)
  await Promise.all(clients.map((cl) => cl.end()))
  return rate
}

/** Restart node 0's arbiter with the background check every `everyMs` (0 = off). */
async function backgroundCheck(c, everyMs) {
  await c.arbiters[0].stop()
  c.nodes[0].config.checkEveryMs = everyMs
  await c.startArbiter(0)
  await c.waitMeshed([0, 1, 2])
}

export async function run(ctx) {
  const rows = ctx.quick ? ROWS_QUICK : ROWS_FULL
  const runs = ctx.quick ? 2 : 5
  const c = await TraktorCluster.create(3, 'check')
  try {
    await c.createTable(DEF)
    say(`  filling ${rows} rows on each of 3 nodes`)
    await Promise.all([0, 1, 2].map((i) => c.sql(i, FILL, [rows])))
    await Promise.all([0, 1, 2].map((i) => c.sql(i, `VACUUM ANALYZE ${TABLE}`)))
    // no background check during the measurements
    for (const n of c.nodes) n.config.checkEveryMs = 0
    await c.startAll([0, 1, 2])
    await c.addToReplicaset(TABLE)
    throwIfInterrupted()

    const checks = []
    const plain = []
    for (let r = 0; r < runs; r++) {
      await ctx.quiet(`check run ${r + 1}`)
      throwIfInterrupted()
      let t0 = performance.now()
      const res = await c.api(r % 3, 'GET', `/v1/cluster/check/${TABLE}`)
      const ms = performance.now() - t0
      const t = res.json?.tables?.[0]
      if (res.status !== 200 || t?.verdict !== 'consistent')
        throw new Error(`check: ${res.status} ${JSON.stringify(res.json).slice(0, 500)}`)
      checks.push(ms)
      t0 = performance.now()
      await c.sql(r % 3, `SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM ${TABLE} t`)
      plain.push(performance.now() - t0)
      say(`  run ${r + 1}: check ${round(ms)} ms, plain md5 on one node ${round(plain.at(-1))} ms`)
    }
    ctx.record(
      figure({
        name: `check: ${rows / 1e6}M-row table on 3 nodes`,
        unit: 'ms',
        samples: checks,
        target: rows === ROWS_FULL ? { stat: 'p50', max: 10_000 } : undefined,
        note: 'GET /v1/cluster/check/{table} round trip, consistent table, nodes hash in parallel',
      }),
    )
    ctx.record(
      figure({
        name: `check: plain md5(string_agg) of the ${rows / 1e6}M-row table on one node`,
        unit: 'ms',
        samples: plain,
        note: "SELECT md5(string_agg(t::text, '' ORDER BY id)) FROM table t, one node",
      }),
    )
    ctx.record(
      figure({
        name: 'check: ratio check / plain md5 on one node',
        unit: 'ratio',
        samples: checks.map((v, i) => v / plain[i]),
        digits: 2,
      }),
    )

    const repairs = []
    for (let r = 0; r < Math.min(runs, 3); r++) {
      // 1,000 keys spread over the table, changed on node 1 only (an origin-tagged session)
      const step = Math.floor(rows / DIFFERING)
      const offset = 1 + r
      const cl = c.clients[1]
      await cl.query(
        `SELECT pg_replication_origin_create('bench_local')
         WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = 'bench_local')`,
      )
      await cl.query(`SELECT pg_replication_origin_session_setup('bench_local')`)
      await cl.query(
        `UPDATE ${TABLE} SET b = 'diverged ' || $3::text
         WHERE id IN (SELECT $1::int + g * $2::int FROM generate_series(0, ${DIFFERING - 1}) g)`,
        [offset, step, r],
      )
      await cl.query(`SELECT pg_replication_origin_session_reset()`)
      await ctx.quiet(`repair run ${r + 1}`)
      throwIfInterrupted()
      const t0 = performance.now()
      const res = await c.api(r % 3, 'POST', `/v1/cluster/check/${TABLE}/repair`)
      const ms = performance.now() - t0
      if (res.status !== 200 || res.json?.repaired_rows !== DIFFERING)
        throw new Error(`repair: ${res.status} ${JSON.stringify(res.json).slice(0, 500)}`)
      repairs.push(ms)
      say(
        `  repair run ${r + 1}: ${round(ms)} ms, ${res.json.writes} writes, check before ${res.json.before.duration_ms} ms, after ${res.json.after.duration_ms} ms`,
      )
    }
    ctx.record(
      figure({
        name: `repair: ${DIFFERING} differing keys in the ${rows / 1e6}M-row table (3 nodes)`,
        unit: 'ms',
        samples: repairs,
        note: 'POST .../repair round trip: check (narrowing, sync rounds), images, 2,000 origin-tagged writes on two nodes, re-check',
      }),
    )

    await c.createTable('bench.w (id int PRIMARY KEY, v text)')
    await Promise.all(
      [0, 1, 2].map((i) =>
        c.sql(i, `INSERT INTO bench.w SELECT g, 'start' FROM generate_series(1, $1::int) g`, [
          W_ROWS,
        ]),
      ),
    )
    await c.addToReplicaset('bench.w')
    const pairs = ctx.quick ? 1 : 3
    const off = []
    const on = []
    for (let r = 0; r < pairs; r++) {
      for (const everyMs of r % 2 === 0 ? [0, 1000] : [1000, 0]) {
        await ctx.quiet(`writers run ${r + 1}`)
        await backgroundCheck(c, everyMs)
        // each window starts from the same state: no checkpoint or vacuum debt carried over
        await Promise.all([0, 1, 2].map((i) => c.sql(i, 'CHECKPOINT')))
        throwIfInterrupted()
        const rate = await writeRate(c, 1)
        ;(everyMs > 0 ? on : off).push(rate)
        say(
          `  writers ${everyMs > 0 ? 'with' : 'without'} the background check: ${round(rate)} tx/s`,
        )
      }
    }
    ctx.record(
      figure({
        name: 'check: writer throughput with / without the background check',
        unit: 'ratio',
        samples: on.map((v, i) => v / off[i]),
        digits: 3,
        target: { stat: 'p50', min: 0.95 },
        note: `${WRITERS} connections updating random rows of a replicated 10,000-row table on node 1, ${WINDOW_MS / 1000} s windows alternating; node 0 runs the background check back to back`,
        extra: { with: on.map((v) => round(v)), without: off.map((v) => round(v)) },
      }),
    )
  } finally {
    await c.stop()
  }
}
