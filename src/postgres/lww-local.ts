// Ordinary (origin-side) triggers that make a local write replicate in a form the row-level
// resolution on the peers can resolve exactly (issue 10, "bad input"; README "Conflict
// resolution"). They fire in local sessions only, never in apply workers. (A value stored out of
// line that an UPDATE left unchanged is sent as "unchanged": in a mesh the receiver finds where
// it kept its own value under another origin's change, lww-kept.ts keptSql; in standalone mode
// the writer re-writes such values, toastFunctionSql.)
//
// - Key change: PostgreSQL sends an UPDATE of the key as an UPDATE of the old key, which a peer
//   that deleted or moved that key skips silently (update_missing): two nodes moving one row to
//   two keys, or one moving it while another deletes it, would diverge forever. After a key
//   change the trigger deletes and re-inserts the row under its new key, so the new key arrives
//   as an insert everywhere (the old key's update is still skipped where it is gone, which is
//   now right). Not installed on tables another table's foreign key references: the delete
//   would fire ON DELETE actions on the rows that reference it.
// - TRUNCATE (statement level): a TRUNCATE replicates as one, and rows another node wrote
//   meanwhile survive only where they arrive after it. No row-level rule can take that; the
//   trigger tells the arbiter (a notification), which checks the table on every node soon, so
//   such a difference shows in health at once (the arbiter's own truncates, a join's, say
//   nothing).
import type { Queryable } from './db.js'
import { qualified, quoteIdent, type RelationName } from './ident.js'

/** the writer's TOAST trigger: standalone mode only (localStatements) */
export const TOAST_TRIGGER = 'trktr_lww_toast'
export const MOVE_TRIGGER = 'trktr_lww_move'
export const TRUNCATE_TRIGGER = 'trktr_lww_truncate'

export interface LocalTable {
  oid: number
  rel: RelationName
  columns: string[]
  pk: string[]
  /** columns that can be stored out of line, with their type as PostgreSQL spells it */
  toastable: Array<{ name: string; type: string }>
  /** another table's foreign key references this one */
  referenced: boolean
  /** a column is GENERATED ALWAYS AS IDENTITY (an insert must override it) */
  identityAlways: boolean
}

/** What the local triggers need to know of the table whose oid is the SQL expression `oid`. */
export const describeLocalColumns = (oid: string) => `
ARRAY(SELECT json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod))
        FROM pg_attribute a WHERE a.attrelid = ${oid} AND a.attnum > 0 AND NOT a.attisdropped
         AND a.attgenerated = '' AND a.attlen = -1 AND a.attstorage <> 'p'
         -- pg_column_toast_chunk_id, which tells an unchanged out-of-line value, is new in 17
         AND current_setting('server_version_num')::int >= 170000 ORDER BY a.attnum) AS toastable,
EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = ${oid}) AS referenced,
EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ${oid} AND a.attidentity = 'a'
         AND NOT a.attisdropped) AS identity_always`

function fn(t: LocalTable, what: string): string {
  return `trktr.${quoteIdent(`lww_${what}_${t.oid}`)}`
}

/** A fresh copy of a value (through its text form): stored anew, so sent in full. */
function fresh(c: { name: string; type: string }): string {
  return `(NEW.${quoteIdent(c.name)}::text || '')::${c.type}`
}

/**
 * Standalone mode (no mesh to ask a row's writer): re-writes the out-of-line values an UPDATE
 * left unchanged, so they are sent in full. The test is in the function, not in a WHEN clause:
 * PostgreSQL copies every trigger's clause for every statement on the table (~0.7 kB per
 * column here), an INSERT's too; in PL/pgSQL, NEW and OLD keep their values as stored, so
 * pg_column_toast_chunk_id still sees where each one is.
 */
export function toastFunctionSql(t: LocalTable): string {
  const unchanged = (c: { name: string }) =>
    `pg_column_toast_chunk_id(NEW.${quoteIdent(c.name)}) = pg_column_toast_chunk_id(OLD.${quoteIdent(c.name)})`
  return `
CREATE OR REPLACE FUNCTION ${fn(t, 'toast')}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  ${t.toastable.map((c) => `IF ${unchanged(c)} THEN NEW.${quoteIdent(c.name)} := ${fresh(c)}; END IF;`).join('\n  ')}
  RETURN NEW;
END $fn$`
}

export function moveFunctionSql(t: LocalTable): string {
  const rel = qualified(t.rel)
  const key = (p: string) => `(${t.pk.map((c) => `${p}.${quoteIdent(c)}`).join(', ')})`
  const cols = t.columns.map(quoteIdent).join(', ')
  const match = `(${t.pk.map((c) => `x.${quoteIdent(c)}`).join(', ')}) = (${t.pk.map((c) => `NEW.${quoteIdent(c)}`).join(', ')})`
  return `
CREATE OR REPLACE FUNCTION ${fn(t, 'move')}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF ${key('OLD')} IS NOT DISTINCT FROM ${key('NEW')} THEN RETURN NULL; END IF;
  DELETE FROM ${rel} x WHERE ${match};
  INSERT INTO ${rel} (${cols}) ${t.identityAlways ? 'OVERRIDING SYSTEM VALUE ' : ''}VALUES (${t.columns.map((c) => `NEW.${quoteIdent(c)}`).join(', ')});
  RETURN NULL;
END $fn$`
}

/**
 * The statements that (re-)create the table's origin-side triggers and drop those it no longer
 * needs. `writerToast`: the writer re-writes kept out-of-line values (standalone mode, where no
 * receiver can ask a row's writer; lww-kept.ts keptSql is the mesh's way).
 */
export function localStatements(t: LocalTable, writerToast = false): string[] {
  const rel = qualified(t.rel)
  const out = [
    `DROP TRIGGER IF EXISTS ${TRUNCATE_TRIGGER} ON ${rel}`,
    // no WHEN clause (the function tells the arbiter's own truncates): PostgreSQL copies every
    // trigger's clause for every statement on the table, an INSERT's too
    `CREATE TRIGGER ${TRUNCATE_TRIGGER} AFTER TRUNCATE ON ${rel} FOR EACH STATEMENT
       EXECUTE FUNCTION trktr.lww_truncated()`,
    `DROP TRIGGER IF EXISTS ${TOAST_TRIGGER} ON ${rel}`,
  ]
  if (writerToast && t.toastable.length > 0) {
    out.push(
      toastFunctionSql(t),
      `CREATE TRIGGER ${TOAST_TRIGGER} BEFORE UPDATE ON ${rel} FOR EACH ROW EXECUTE FUNCTION ${fn(t, 'toast')}()`,
    )
  } else out.push(`DROP FUNCTION IF EXISTS ${fn(t, 'toast')}()`)
  out.push(`DROP TRIGGER IF EXISTS ${MOVE_TRIGGER} ON ${rel}`)
  if (!t.referenced) {
    out.push(
      moveFunctionSql(t),
      // UPDATE OF the key: an UPDATE that does not set a key column skips the trigger (about
      // 2 µs an UPDATE, measured in an update loop); one that sets it to the same value enters
      // the function, which returns at once (no WHEN clause: PostgreSQL copies every trigger's
      // clause for every statement on the table, an INSERT's too)
      `CREATE TRIGGER ${MOVE_TRIGGER} AFTER UPDATE OF ${t.pk.map(quoteIdent).join(', ')} ON ${rel} FOR EACH ROW EXECUTE FUNCTION ${fn(t, 'move')}()`,
    )
  }
  return out
}

/** The local part of a described table's row (describeLocalColumns). */
export function localOf(r: {
  toastable?: Array<{ name: string; type: string }> | null
  referenced?: boolean | null
  identity_always?: boolean | null
}): Pick<LocalTable, 'toastable' | 'referenced' | 'identityAlways'> {
  return {
    toastable: r.toastable ?? [],
    referenced: r.referenced ?? false,
    identityAlways: r.identity_always ?? false,
  }
}

/**
 * PostgreSQL refuses to change the type of a column a trigger's WHEN clause or column list
 * names (SQLSTATE 0A000, "cannot alter type of a column used in a trigger definition"), and
 * these two triggers name the key and the out-of-line columns. When the error's detail names
 * one of them, drop it (the caller's transaction re-makes it after the statement): true if one
 * was dropped, so the statement can run again.
 */
export async function dropTriggerBlockingAlter(q: Queryable, err: unknown): Promise<boolean> {
  const e = err as { code?: unknown; detail?: unknown }
  if (e.code !== '0A000' || typeof e.detail !== 'string') return false
  const { rows } = await q.query<{ schema: string; table: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS table, t.tgname AS name
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = ANY ($2::text[])
        AND starts_with($1, pg_describe_object('pg_trigger'::regclass, t.oid, 0) || ' depends on column ')`,
    [e.detail, [TOAST_TRIGGER, MOVE_TRIGGER]],
  )
  const [t] = rows
  if (!t || (t.name !== TOAST_TRIGGER && t.name !== MOVE_TRIGGER)) return false
  await q.query(`DROP TRIGGER ${t.name} ON ${qualified({ schema: t.schema, table: t.table })}`)
  return true
}
