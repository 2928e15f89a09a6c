// (8, continued) What a tombstone costs per deleted row: since 7 December (session 40) every
// DELETE an apply worker applies to a table resolved by lww leaves one (src/postgres/lww-
// tombstones.ts: a row appended to trktr.tombstones by a replica row trigger; the writer records
// none). Two bare servers, one publishing a table to the other (origin = none), both with lww's
// triggers, with and without the tombstone trigger, alternating.
//
// One repetition: the table is filled (replicated, not timed), the subscription disabled, the
// writer deletes every row in transactions of 50 (a DO loop: the time per row on the writer),
// then the subscription is enabled and the receiver applies the deletes (the time per row to
// catch up). Tombstones left by the last repetition are emptied first on both.
import { destroyServers } from '../../dist/postgres/embedded.js'
import { LWW_DDL } from '../../dist/postgres/lww-schema.js'
import { TOMB_TRIGGER } from '../../dist/postgres/lww-tombstones.js'
import { alternate, pauseSubscription, publishTo, setTriggers } from './bench-lww-apply.mjs'
import { startDatabases } from './cluster.mjs'
import { say, sleep, waitFor } from './util.mjs'

const ROWS = 100_000
const REL = { schema: 'bench', table: 'd' }

async function count(c) {
  return (await c.query('SELECT count(*)::int AS n FROM bench.d')).rows[0].n
}

async function repetition([writer, receiver]) {
  for (const c of [writer, receiver]) await c.query('TRUNCATE trktr.tombstones')
  await writer.query(
    `INSERT INTO bench.d (id, v) SELECT g, 'row ' || g FROM generate_series(1, ${ROWS}) g`,
  )
  await waitFor(async () => (await count(receiver)) === ROWS, 120_000, 'the rows on the receiver')
  await pauseSubscription(receiver, 'bench_d')
  const w0 = performance.now()
  await writer.query(
    `DO $$ BEGIN FOR i IN 1..${ROWS} LOOP DELETE FROM bench.d WHERE id = i;
       IF i % 50 = 0 THEN COMMIT; END IF; END LOOP; END $$`,
  )
  const write = performance.now() - w0
  const a0 = performance.now()
  await receiver.query('ALTER SUBSCRIPTION bench_d ENABLE')
  while ((await count(receiver)) > 0) {
    if (performance.now() - a0 > 120_000) throw new Error('deletes not applied')
    await sleep(5)
  }
  return { write: (write / ROWS) * 1000, apply: ((performance.now() - a0) / ROWS) * 1000 }
}

export async function deleteCost(ctx) {
  const pairs = ctx.quick ? 2 : 4
  say(
    'lww delete cost: two bare servers with lww triggers, the same DELETE stream with and without the tombstone trigger',
  )
  const { servers, clients, unregister } = await startDatabases(2, 'lwwdel')
  try {
    for (const c of clients) {
      await c.query(
        `CREATE SCHEMA bench; CREATE TABLE bench.d (id int PRIMARY KEY, v text NOT NULL);
         CREATE SCHEMA trktr; CREATE TABLE trktr.node (node_id int)`,
      )
      await c.query(LWW_DDL)
    }
    await publishTo(servers, clients, 'bench_d', 'bench.d')
    await setTriggers(clients, true, REL)
    await repetition(clients)
    await alternate(ctx, {
      pairs,
      label: (on) => `lww delete cost: ${on ? 'with' : 'without'} the tombstone`,
      set: async (on) => {
        await setTriggers(clients, true, REL)
        if (!on) for (const c of clients) await c.query(`DROP TRIGGER ${TOMB_TRIGGER} ON bench.d`)
      },
      rep: () => repetition(clients),
      name: (what) => `lww: ${what} time per deleted row, with / without the tombstone trigger`,
      note: `${ROWS} rows deleted in transactions of 50 by a DO loop on one server, applied by the other, lww's other triggers on both; pairs alternate`,
    })
  } finally {
    unregister()
    await clients[1]?.query('DROP SUBSCRIPTION IF EXISTS bench_d').catch(() => undefined)
    await Promise.allSettled(clients.map((c) => c.end()))
    await destroyServers(servers)
  }
}
