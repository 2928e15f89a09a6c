// Tombstones (issue 10): the keys of every replicated table whose DELETE this node applied from
// a peer lately, a row per delete in trktr.tombstones, whose xmin is the applying transaction —
// so the delete's origin (the peer that made it, or a repair under trktr_lww_<n>) and its origin
// commit time are known the way a row's are. A check that finds a row on some nodes and not on
// others cannot tell a DELETE one node never applied from a row written again after a DELETE
// that one node applied last: both leave one side without the row. The tombstones tell them
// apart (cluster/check-deletes.ts): a node holding a row that never applied the newest DELETE of
// its key lost that DELETE (PostgreSQL 17's apply worker can skip one without a word,
// commitfest 5151), and a row whose holder applied that DELETE before it was written after it.
// Recorded where a DELETE is applied, not where it is made: a writer's DELETE costs nothing
// more (a trigger in writers' sessions cost a one-row DELETE four times its time here), and the
// node that made it is known to every node that applied it. So a cluster of two nodes, where
// the one that skipped a DELETE is the only other, has no tombstone of it: that stays the
// operator's. One row trigger (ENABLE REPLICA: apply workers); rows are appended, never
// updated (an upsert cost twice as much); kept TOMBSTONES_KEEP_MS, then pruned by the lww loop;
// a check takes the newest per key.
import { stableTx, type TableLayout, tableSql, writtenBy } from './check-store.js'
import type { Db } from './db.js'
import { qualified, quoteIdent, quoteLiteral, type RelationName } from './ident.js'

export const TOMB_TRIGGER = 'trktr_lww_tomb'
/**
 * a tombstone is kept this long: past the check after conflicts (seconds) and a background
 * check's period (10 minutes by default), so either can still read it
 */
export const TOMBSTONES_KEEP_MS = 15 * 60_000
/** tombstones pruned per statement (a long delete burst is pruned in several) */
const PRUNE_BATCH = 50_000
const PRUNE_BATCHES = 20

/**
 * The table's tombstone trigger: its function (static SQL for the table's key, every name
 * quoted) and the trigger. Deletes our own replica triggers make inside an apply worker (a row
 * moved out of an incoming row's way on a unique index or key) are not deletes of the key and
 * leave none; nor do the arbiter's own sessions should they run as replica (application_name
 * traktor-<node>-...: a join's copy emptying a table would have the joiner's rows look deleted).
 */
export function tombstoneStatements(t: { oid: number; rel: RelationName; pk: string[] }): string[] {
  const rel = qualified(t.rel)
  const fn = `trktr.${quoteIdent(`lww_tomb_${t.oid}`)}`
  const keyOf = `jsonb_build_object(${t.pk.map((c) => `${quoteLiteral(c)}, OLD.${quoteIdent(c)}`).join(', ')})`
  return [
    `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF pg_trigger_depth() > 1 OR current_setting('application_name') ~ '^traktor-[0-9]+-' THEN
    RETURN NULL;
  END IF;
  INSERT INTO trktr.tombstones (relid, key) VALUES (${t.oid}, ${keyOf});
  RETURN NULL;
END $fn$`,
    `DROP TRIGGER IF EXISTS ${TOMB_TRIGGER} ON ${rel}`,
    `CREATE TRIGGER ${TOMB_TRIGGER} AFTER DELETE ON ${rel} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
    `ALTER TABLE ${rel} ENABLE REPLICA TRIGGER ${TOMB_TRIGGER}`,
  ]
}

/** A tombstone as the check reads it: the key, and its delete's origin commit and origin. */
export interface TombstoneRaw {
  /** the key as the check writes it (check-store.ts keyJson) */
  k: string
  /** origin commit time of the delete, µs since 1970 (text); null: not known */
  ts: string | null
  /** who deleted it, labelled as check-store.ts writtenBy labels a row's writer */
  o: string | null
}

/**
 * The tombstones of these keys (JSON object texts as the check writes them), every one kept
 * (a key deleted twice has two: the caller takes the newest). The stored key is the trigger's
 * jsonb of the key's values, written under the apply worker's settings (a timestamptz's
 * offset, say), so keys are matched by value, as the table's own types compare them.
 */
export async function tombstonesByKeys(
  db: Db,
  l: TableLayout,
  keys: string[],
  timeoutMs: number,
): Promise<TombstoneRaw[]> {
  if (keys.length === 0) return []
  const s = tableSql(l)
  const by = writtenBy('d.xmin')
  const sql = `SELECT ${s.keyJson} AS k, ${by.select}
FROM trktr.tombstones d
CROSS JOIN LATERAL jsonb_populate_record(NULL::${s.table}, d.key) t
${by.from}
WHERE d.relid = ${quoteLiteral(s.table)}::regclass
  AND ${s.keyTuple} IN (SELECT ${l.key.map((c) => `w.${quoteIdent(c.name)}`).join(', ')}
    FROM jsonb_to_recordset($1::jsonb) AS w(${s.keyDefs}))`
  return await stableTx(
    db,
    timeoutMs,
    async (c) => (await c.query<TombstoneRaw>(sql, [`[${keys.join(',')}]`])).rows,
  )
}

/** Drop tombstones older than `keepMs` (a dropped table's too: by age); how many went. */
export async function pruneTombstones(db: Db, keepMs = TOMBSTONES_KEEP_MS): Promise<number> {
  let pruned = 0
  for (let i = 0; i < PRUNE_BATCHES; i++) {
    const [r] = await db.query<{ n: number }>(
      `WITH gone AS (
         DELETE FROM trktr.tombstones WHERE ctid = ANY (ARRAY(
           SELECT d.ctid FROM trktr.tombstones d
            WHERE d.at < clock_timestamp() - $1::int8 * interval '1 millisecond' LIMIT $2))
         RETURNING 1)
       SELECT count(*)::int AS n FROM gone`,
      [keepMs, PRUNE_BATCH],
    )
    pruned += r?.n ?? 0
    if ((r?.n ?? 0) < PRUNE_BATCH) break
  }
  return pruned
}
