// The sequences owned by replicated tables (serial, bigserial, identity), as PostgreSQL holds
// them: what each has handed out, and the node-striped shape the arbiter gives them
// (INCREMENT BY stride, START = RESTART = the first value past a floor in this node's residue
// class). The decisions (which stride, which floor) live in cluster/sequences.ts.
import { type Db, prepared } from './db.js'
import { formatRelation, qualified, quoteIdent, type RelationName } from './ident.js'

export interface OwnedSequence {
  rel: RelationName
  column: string
  seq: RelationName
  /** integer type of the sequence: smallint, integer or bigint */
  type: string
  increment: bigint
  start: bigint
  min: bigint
  max: bigint
  /** the last value handed out (cached values included), null if never used */
  last: bigint | null
}

/** One sequence-fed column and the highest value used for it here. */
export interface UsedValue {
  schema: string
  table: string
  column: string
  /** greatest(max(column), last value, start - 1), decimal; null when nothing was used */
  used: string | null
  /** the sequence's increment here (a member not yet re-striped answers its old stride) */
  increment: string
}

const OWNED = prepared(
  'owned_sequences',
  `
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
       sn.nspname AS seq_schema, s.relname AS seq_name,
       format_type(q.seqtypid, NULL) AS type, q.seqincrement::text AS increment,
       q.seqstart::text AS start, q.seqmin::text AS min, q.seqmax::text AS max,
       ps.last_value::text AS last
FROM unnest($1::text[], $2::text[]) AS u(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = u.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = u.table_name
JOIN pg_depend d ON d.refobjid = c.oid AND d.refclassid = 'pg_class'::regclass
  AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
JOIN pg_sequence q ON q.seqrelid = s.oid
LEFT JOIN pg_sequences ps ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname
ORDER BY 1, 2, 3`,
)

const REPLICATED = prepared(
  'replicated_tables',
  `SELECT schema_name, table_name FROM trktr.replicaset
   WHERE status IN ('committed', 'pending-remove') ORDER BY 1, 2`,
)

/** The tables in the replicaset (committed, or committed and staged for removal). */
export async function replicatedTables(db: Db): Promise<RelationName[]> {
  const rows = await db.query<{ schema_name: string; table_name: string }>(REPLICATED)
  return rows.map((r) => ({ schema: r.schema_name, table: r.table_name }))
}

/** The sequences owned by columns of these tables (serial and identity alike). */
export async function ownedSequences(
  db: Db,
  rels: readonly RelationName[],
): Promise<OwnedSequence[]> {
  if (rels.length === 0) return []
  const rows = await db.query<Record<string, string | null>>(OWNED, [
    rels.map((r) => r.schema),
    rels.map((r) => r.table),
  ])
  return rows.map((r) => ({
    rel: { schema: String(r.schema), table: String(r.table) },
    column: String(r.column),
    seq: { schema: String(r.seq_schema), table: String(r.seq_name) },
    type: String(r.type),
    increment: BigInt(String(r.increment)),
    start: BigInt(String(r.start)),
    min: BigInt(String(r.min)),
    max: BigInt(String(r.max)),
    last: r.last === null || r.last === undefined ? null : BigInt(r.last),
  }))
}

/** What every sequence of these tables has handed out here (column and sequence alike). */
export async function usedValues(db: Db, rels: readonly RelationName[]): Promise<UsedValue[]> {
  const out: UsedValue[] = []
  for (const s of await ownedSequences(db, rels)) {
    const [r] = await db.query<{ m: string | null }>(
      `SELECT max(${quoteIdent(s.column)})::text AS m FROM ${qualified(s.rel)}`,
    )
    const col = r?.m === null || r?.m === undefined ? null : BigInt(r.m)
    // a striped sequence starts past the floor it was given: start - 1 keeps that floor known
    // even before the sequence hands out its first value
    const used = [col, s.last, s.start - 1n].reduce<bigint | null>(
      (a, b) => (b === null ? a : a === null || b > a ? b : a),
      null,
    )
    out.push({
      schema: s.rel.schema,
      table: s.rel.table,
      column: s.column,
      used: used === null ? null : used.toString(),
      increment: s.increment.toString(),
    })
  }
  return out
}

/**
 * Make a sequence hand out `start`, `start + stride`, ... from now on. Sessions that cached
 * values keep them, but those are below the floor `start` was chosen past. Waits at most
 * 2 s for a lock on the sequence.
 */
export async function stripe(
  db: Db,
  seq: RelationName,
  stride: bigint,
  start: bigint,
): Promise<void> {
  if (stride < 1n || start < 1n) {
    throw new Error(`bad stripe for ${formatRelation(seq)}: ${stride}/${start}`)
  }
  // numbers, not text: bigint to decimal cannot carry anything but digits
  await db.tx(async (c) => {
    await c.query(`SET LOCAL lock_timeout = 2000`)
    await c.query(
      `ALTER SEQUENCE ${qualified(seq)} INCREMENT BY ${stride.toString()}
       START WITH ${start.toString()} RESTART WITH ${start.toString()}`,
    )
  })
}
