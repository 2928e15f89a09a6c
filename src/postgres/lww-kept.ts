// The rows an apply worker updated over another origin's version while keeping this node's value
// of a column stored out of line (lww.ts keptSql queues them in trktr.kept_values): what the
// arbiter needs to compare each with its writer's copy (cluster/check-kept.ts).
import { stableTx, tableLayout, tableSql } from './check-store.js'
import type { Db } from './db.js'
import { parseRelationName, qualified, quoteIdent, quoteLiteral } from './ident.js'
import type { LocalTable } from './lww-local.js'
import { KEPT, QUEUED_CHANNEL } from './lww-schema.js'

/**
 * The update branch's part for columns stored out of line (PostgreSQL 17): PostgreSQL sends a
 * value an UPDATE did not change as "unchanged", and the apply worker keeps this node's value.
 * Over a version of another origin that value may not be the writer's (a concurrent update
 * here changed it): the row may hold a value its writer never had. The key is queued in
 * trktr.kept_values (the first one of a table announced), and the arbiter compares the row
 * with its writer's copy (cluster/check-kept.ts). Nothing on the writer's side: a trigger
 * there cost every UPDATE a call and, being BEFORE UPDATE, a row lock.
 */
export function keptSql(t: Pick<LocalTable, 'oid' | 'pk' | 'toastable'>): string {
  if (t.toastable.length === 0) return ''
  const kept = t.toastable
    .map(
      (c) =>
        `pg_column_toast_chunk_id(NEW.${quoteIdent(c.name)}) = pg_column_toast_chunk_id(OLD.${quoteIdent(c.name)})`,
    )
    .join(' OR ')
  const keyOf = `jsonb_build_object(${t.pk.map((c) => `${quoteLiteral(c)}, NEW.${quoteIdent(c)}`).join(', ')})`
  return `IF TG_OP = 'UPDATE' AND l_ro IS DISTINCT FROM app AND (${kept}) THEN
    IF NOT EXISTS (SELECT 1 FROM trktr.kept_values k WHERE k.relid = ${t.oid}) THEN
      PERFORM pg_notify(${quoteLiteral(QUEUED_CHANNEL)}, ${quoteLiteral(KEPT)} || trktr.display_relation(TG_RELID));
    END IF;
    INSERT INTO trktr.kept_values (relid, key) VALUES (${t.oid}, ${keyOf}) ON CONFLICT DO NOTHING;
  END IF;`
}

export interface KeptEntry {
  /** the key as queued (jsonb text) */
  entry: string
  /** the key as the check writes it (check-store.ts keyJson) */
  k: string
}

/** The tables with queued kept values ("schema.table"). */
export async function keptTables(db: Db): Promise<string[]> {
  // entries of tables dropped since: nothing to compare
  await db.query(
    `DELETE FROM trktr.kept_values k WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = k.relid)`,
  )
  const rows = await db.query<{ relation: string }>(
    `SELECT DISTINCT trktr.display_relation(k.relid) AS relation FROM trktr.kept_values k ORDER BY 1`,
  )
  return rows.map((r) => r.relation)
}

/**
 * The queued kept values of one table, each with its key as the check writes it; an entry whose
 * row is gone here is dropped (a delete came after it: nothing is left to compare).
 */
export async function keptPending(
  db: Db,
  relation: string,
  timeoutMs: number,
): Promise<KeptEntry[]> {
  const l = await tableLayout(db, parseRelationName(relation))
  const s = tableSql(l)
  const w = l.key.map((c) => `w.${quoteIdent(c.name)}`).join(', ')
  const row = `(SELECT ${w} FROM jsonb_populate_record(NULL::${s.table}, k.key) w)`
  const relid = `${quoteLiteral(s.table)}::regclass`
  return await stableTx(db, timeoutMs, async (c) => {
    await c.query(
      `DELETE FROM trktr.kept_values k WHERE k.relid = ${relid}
         AND NOT EXISTS (SELECT 1 FROM ${s.table} t WHERE ${s.keyTuple} = ${row})`,
    )
    const { rows } = await c.query<KeptEntry>(
      `SELECT k.key::text AS entry, ${s.keyJson} AS k
         FROM trktr.kept_values k JOIN ${s.table} t ON ${s.keyTuple} = ${row}
        WHERE k.relid = ${relid} ORDER BY k.at LIMIT 1000`,
    )
    return rows
  })
}

/** Drop these entries of a table (keys as queued): compared and settled. */
export async function keptDone(db: Db, relation: string, entries: string[]): Promise<void> {
  if (entries.length === 0) return
  await db.query(
    `DELETE FROM trktr.kept_values WHERE relid = $1::regclass AND key::text = ANY ($2::text[])`,
    [qualified(parseRelationName(relation)), entries],
  )
}
