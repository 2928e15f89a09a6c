// (8, continued) What the row-level triggers cost per updated row, apart from everything else
// the traktor mesh does: two bare servers, one publishing a table to the other (origin = none),
// the same table with lww's triggers made by src/postgres/lww.ts on both (the replica triggers
// of the receiver and the origin-side triggers of the writer) and without them, alternating.
//
// One repetition: the subscription is disabled, the writer updates every row of the table in
// transactions of 50 rows (a DO loop: the time per row on the writer), then the subscription is
// enabled and the receiver applies all of them (the time per row to catch up: the apply
// worker's cost). No conflict: every row was last written by the writer, as in the data path's
// steady state, so the replica triggers' WHEN clause never lets them fire.
import { destroyServers } from '../../dist/postgres/embedded.js'
import * as lww from '../../dist/postgres/lww.js'
import { LWW_DDL } from '../../dist/postgres/lww-schema.js'
import { DB, startDatabases } from './cluster.mjs'
import { figure, percentile, round, say, sleep, throwIfInterrupted, waitFor } from './util.mjs'

const ROWS = 200_000
const TABLE = 'bench.a (id int PRIMARY KEY, v text NOT NULL, rep int NOT NULL DEFAULT 0)'
const REL = { schema: 'bench', table: 'a' }

export async function setTriggers(clients, on, rel = REL) {
  for (const c of clients) {
    if (!on) {
      await lww.uninstall(c, rel)
      continue
    }
    const t = await lww.describe({ query: async (q, p) => (await c.query(q, p)).rows }, rel)
    await lww.install(c, t)
  }
}

/** The first server publishes `table` to the second (origin = none, no initial copy). */
export async function publishTo([w], clients, name, table) {
  await clients[0].query(`CREATE PUBLICATION ${name} FOR TABLE ${table}`)
  await clients[1].query(
    `CREATE SUBSCRIPTION ${name} CONNECTION 'host=127.0.0.1 port=${w.port} dbname=${DB} user=${w.superuser} password=${w.superPassword}'
     PUBLICATION ${name} WITH (origin = none, copy_data = false)`,
  )
}

/** Disable a subscription and wait until its apply worker is gone. */
export async function pauseSubscription(receiver, name) {
  await receiver.query(`ALTER SUBSCRIPTION ${name} DISABLE`)
  await waitFor(
    async () =>
      (
        await receiver.query(
          `SELECT count(*)::int AS n FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL`,
          [name],
        )
      ).rows[0].n === 0,
    30_000,
    'the apply worker gone',
  )
}

/**
 * Pairs of repetitions, one with (`on`) and one without, their order alternating; `set(on)`
 * readies each, `rep()` measures one ({write, apply} in µs a row). Records the ratios.
 */
export async function alternate(ctx, { pairs, label, set, rep, name, note }) {
  const results = { on: [], off: [] }
  for (let i = 0; i < pairs; i++) {
    for (const on of i % 2 === 0 ? [true, false] : [false, true]) {
      throwIfInterrupted()
      await set(on)
      const x = await rep()
      results[on ? 'on' : 'off'].push(x)
      say(`${label(on)}: write ${round(x.write, 2)} µs/row, apply ${round(x.apply, 2)} µs/row`)
    }
  }
  const med = (k, f) => percentile(results[k].map(f), 50)
  for (const [what, f] of [
    ['apply', (x) => x.apply],
    ['write', (x) => x.write],
  ]) {
    ctx.record(
      figure({
        name: name(what),
        unit: 'ratio',
        samples: results.on.map((x, i) => f(x) / f(results.off[i])),
        digits: 2,
        note: `medians ${round(med('on', f), 2)} µs/row with, ${round(med('off', f), 2)} µs/row without; ${note}`,
      }),
    )
  }
}

async function repetition([writer, receiver], rep) {
  await pauseSubscription(receiver, 'bench_a')
  const w0 = performance.now()
  await writer.query(
    `DO $$ BEGIN FOR i IN 1..${ROWS} LOOP UPDATE bench.a SET v = 'x' || i, rep = ${rep} WHERE id = i;
       IF i % 50 = 0 THEN COMMIT; END IF; END LOOP; END $$`,
  )
  const write = performance.now() - w0
  const a0 = performance.now()
  await receiver.query('ALTER SUBSCRIPTION bench_a ENABLE')
  for (;;) {
    const { rows } = await receiver.query(`SELECT rep FROM bench.a WHERE id = ${ROWS}`)
    if (rows[0].rep === rep) break
    if (performance.now() - a0 > 120_000) throw new Error(`repetition ${rep} not applied`)
    await sleep(5)
  }
  return { write: (write / ROWS) * 1000, apply: ((performance.now() - a0) / ROWS) * 1000 }
}

export async function applyCost(ctx) {
  const pairs = ctx.quick ? 2 : 5
  say('lww trigger cost: two bare servers, the same UPDATE stream with and without the triggers')
  const { servers, clients, unregister } = await startDatabases(2, 'lwwap')
  try {
    for (const c of clients) {
      // the queue's functions name trktr.node (an arbiter's node table; only its id is read)
      await c.query(
        `CREATE SCHEMA bench; CREATE TABLE ${TABLE}; CREATE SCHEMA trktr; CREATE TABLE trktr.node (node_id int)`,
      )
      await c.query(
        `INSERT INTO bench.a (id, v) SELECT g, 'seed' FROM generate_series(1, ${ROWS}) g`,
      )
      await c.query(LWW_DDL)
    }
    await publishTo(servers, clients, 'bench_a', 'bench.a')
    let rep = 0
    await setTriggers(clients, false)
    await repetition(clients, ++rep)
    await alternate(ctx, {
      pairs,
      label: (on) => `lww trigger cost: ${on ? 'with' : 'without'} triggers`,
      set: (on) => setTriggers(clients, on),
      rep: () => repetition(clients, ++rep),
      name: (what) => `lww: ${what} time per updated row, with / without lww's triggers`,
      note: `${ROWS} rows updated in transactions of 50 by a DO loop on one server, applied by the other; pairs alternate`,
    })
  } finally {
    unregister()
    await clients[1]?.query('DROP SUBSCRIPTION IF EXISTS bench_a').catch(() => undefined)
    await Promise.allSettled(clients.map((c) => c.end()))
    await destroyServers(servers)
  }
}
