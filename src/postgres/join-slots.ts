// The members' replication slots on a joining node, made by the joining node itself before it
// fences its local writers (issue 12). Creating a logical slot waits until every transaction
// that holds an xid on the server has ended; a local writer waiting on the join's fence holds
// one, so a slot made while the fence is up waits for the fence, and a write that then commits
// before the slot's consistent point never reaches that member. Made first, the slots keep
// every local write from then on, and the members' subscriptions start from them later.
//
// trktr.join_slots lists the slots a joining node made for its members: a member that
// subscribes keeps a listed slot (subscriptions.ts createSlot), where it drops any other
// inactive slot of that name as a leftover that would replay old changes.
import type { Db, Queryable } from './db.js'
import type { RelationName } from './ident.js'
import { emptyTable } from './join-copy.js'
import { ensureOrigin } from './repair-store.js'

export const JOIN_SLOTS_DDL = `
CREATE TABLE IF NOT EXISTS trktr.join_slots (
  slot_name text PRIMARY KEY,
  created timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON trktr.join_slots FROM PUBLIC;`

/** Slot creation waits for the server's running transactions; this long at most. */
const SLOT_TIMEOUT_MS = 60_000

const SLOTS = `SELECT slot_name, active FROM pg_replication_slots WHERE slot_name = ANY ($1::text[])`

/**
 * Make the members' slots here. fresh (a join): an inactive slot of one of these names is a
 * leftover (of an interrupted join, or an earlier life of this node id) and is made anew;
 * otherwise (a resync, where members subscribe already) only missing slots are made.
 * Returns the names of the slots made.
 */
export async function ensureMemberSlots(
  db: Db,
  names: readonly string[],
  fresh: boolean,
): Promise<string[]> {
  if (names.length === 0) return []
  await db.query(JOIN_SLOTS_DDL)
  const rows = await db.query<{ slot_name: string; active: boolean }>(SLOTS, [names])
  const wanted = names.filter((name) => {
    const s = rows.find((r) => r.slot_name === name)
    return !s || (fresh && !s.active)
  })
  // each slot waits for the transactions running here to end and for the next snapshot of
  // them in the WAL (up to 15 s on a quiet server): made side by side, they wait once
  await Promise.all(
    wanted.map((name) =>
      db.session(async (c) => {
        await c.query(`SET statement_timeout = ${SLOT_TIMEOUT_MS}`)
        if (rows.some((r) => r.slot_name === name))
          await c.query(`SELECT pg_drop_replication_slot($1)`, [name])
        await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [name])
        await c.query(
          `INSERT INTO trktr.join_slots (slot_name) VALUES ($1)
           ON CONFLICT (slot_name) DO UPDATE SET created = now()`,
          [name],
        )
      }),
    ),
  )
  return wanted
}

/** Drop the slots a join made here that no member uses (a join that was refused). */
export async function dropUnusedJoinSlots(db: Db): Promise<string[]> {
  await db.query(JOIN_SLOTS_DDL)
  const rows = await db.query<{ slot_name: string }>(
    `SELECT j.slot_name FROM trktr.join_slots j
     JOIN pg_replication_slots s ON s.slot_name = j.slot_name AND NOT s.active`,
  )
  for (const r of rows) {
    await db.query(`SELECT pg_drop_replication_slot($1)`, [r.slot_name]).catch(() => undefined)
  }
  await db.query(
    `DELETE FROM trktr.join_slots j
     WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = j.slot_name)`,
  )
  return rows.map((r) => r.slot_name)
}

/**
 * Delete every row of these tables under a replication origin: no member (origin = none)
 * receives the deletes. A join in mode "copy", or one that starts over, empties the tables
 * before the members' slots are made, so no row in them can be in a slot and then vanish here.
 */
export async function clearTables(
  db: Db,
  tables: readonly RelationName[],
  origin: string,
): Promise<void> {
  await db.session(async (c: Queryable) => {
    await ensureOrigin(c, origin)
    await c.query(`SET session_replication_role = replica`).catch(() => undefined)
    await c.query('BEGIN')
    await c.query(`SELECT pg_replication_origin_session_setup($1)`, [origin])
    for (const rel of tables) await emptyTable(c, rel, true)
    await c.query('COMMIT')
    await c.query(`SELECT pg_replication_origin_session_reset()`)
  })
}
