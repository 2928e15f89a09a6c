// Row-level last-writer-wins (issue 10; design and measurements: README "Conflict resolution").
// PostgreSQL 17 applies an update from a peer over a row another node changed meanwhile, and
// stops on an insert whose key exists. Replica triggers (they fire only in apply workers) on
// every replicated table turn each of these into "apply the incoming version, queue the
// version it displaced": the rest of the remote transaction always applies. The incoming
// version's origin and commit timestamp are known after commit, from the xmin of the queue row
// (pg_xact_commit_timestamp_origin). A resolution round on each node then keeps, per key, the
// newest version it has seen — by origin commit timestamp, ties to the higher nodeId — and
// restores a displaced version that is newer than the row's current one in a session tagged
// with the winner's replication origin (trktr_lww_<node>) and commit timestamp, so the repair
// is not re-published and every node ends with the same (timestamp, node) for the row. Every
// node sees every version (full mesh, origin = none), so every node reaches the same maximum
// without asking the others. A delete wins over a concurrent update (an update or delete of a
// row a node no longer has is skipped by PostgreSQL, which is then the right outcome); every
// applied delete leaves a tombstone (lww-tombstones.ts) for a check that finds a key some
// nodes lack.
//
// The update-and-delete trigger fires only when the row's current version came from another
// origin than the one the apply worker applies from (its WHEN clause, a small function: a
// writer updating its own rows costs its peers one commit-timestamp lookup per row), after the
// change (it only queues the version displaced). The insert branch, and the key-change branch
// of updates (a row holding an incoming update's new key is moved out of its way), cost the
// apply worker about three times its work per row, so they exist only after a unique violation
// stopped a subscription (23505) and are dropped when quiet.
import { type Db, prepared, type Queryable } from './db.js'
import { qualified, quoteIdent, quoteLiteral, type RelationName } from './ident.js'
import { keptSql } from './lww-kept.js'
import {
  describeLocalColumns,
  type LocalTable,
  localOf,
  localStatements,
  MOVE_TRIGGER,
  TOAST_TRIGGER,
  TRUNCATE_TRIGGER,
} from './lww-local.js'
import { TOMB_TRIGGER, tombstoneStatements } from './lww-tombstones.js'

/** updates and deletes: one trigger, as each costs every statement on the table (OTHER_ORIGIN) */
export const UD_TRIGGER = 'trktr_lww_ud'
/** the delete trigger of earlier versions, now UD_TRIGGER's: dropped where it is left */
const DEL_TRIGGER = 'trktr_lww_del'
/** the key-change branch of updates: armed with the insert branch */
export const KEY_TRIGGER = 'trktr_lww_key'
/** the replication origin a version of node n is restored under (trktr.origin_node reads it) */
export function lwwOrigin(node: number): string {
  return `trktr_lww_${node}`
}
export const INS_TRIGGER = 'trktr_lww_ins'
/** the replica triggers, made and dropped together */
const REPLICA_TRIGGERS = [UD_TRIGGER, DEL_TRIGGER, KEY_TRIGGER, INS_TRIGGER]
const LOCK_TIMEOUT = `SET LOCAL lock_timeout = 3000`
/**
 * The row's current version came from another origin than the one this apply worker applies
 * from (trktr.lww_other_origin, lww-schema.ts). Reads OLD's system column only: no column of
 * the table is named, so a column's type can still change under the trigger. A function call,
 * not the expression written out: PostgreSQL copies every trigger's WHEN clause (its stored
 * node tree, 1.3 kB written out) for every statement on the table, whatever it does — an INSERT
 * paid for the two replica triggers' clauses though neither fires on it.
 */
const OTHER_ORIGIN = `trktr.lww_other_origin(OLD.xmin)`

/** A replicated table as the trigger generators need it. */
export interface LwwTable extends LocalTable {
  oid: number
  rel: RelationName
  /** columns in order, generated columns left out */
  columns: string[]
  pk: string[]
  /**
   * the unique indexes besides the primary key that an incoming row can collide on (key columns
   * only; partial and expression indexes left out: their conflicts stay the resolver's skip)
   */
  uniques: UniqueIndex[]
}

export interface UniqueIndex {
  name: string
  columns: string[]
  /** NULLS NOT DISTINCT: two NULLs collide */
  nullsNotDistinct: boolean
}

const DESCRIBE = `
SELECT c.oid::int8 AS oid,
       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
               AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum) AS columns,
       ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)) AS pk,
       ARRAY(SELECT json_build_object('name', ic.relname::text, 'nnd', i.indnullsnotdistinct,
                      'columns', ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n
                                        WHERE k.o <= i.indnkeyatts ORDER BY k.o))
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indisprimary AND i.indisvalid
                AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY ic.relname) AS uniques,
       ${describeLocalColumns('c.oid')}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`

export async function describe(
  db: Pick<Db, 'query'>,
  rel: RelationName,
): Promise<LwwTable | undefined> {
  const [r] = await db.query<
    {
      oid: string
      columns: string[]
      pk: string[]
      uniques: Array<{ name: string; nnd: boolean; columns: string[] }>
    } & Parameters<typeof localOf>[0]
  >(DESCRIBE, [rel.schema, rel.table])
  if (!r || r.pk.length === 0) return undefined
  const uniques = r.uniques.map((u) => ({
    name: u.name,
    columns: u.columns,
    nullsNotDistinct: u.nnd,
  }))
  return { oid: Number(r.oid), rel, columns: r.columns, pk: r.pk, uniques, ...localOf(r) }
}

export function functionName(t: Pick<LwwTable, 'oid'>): string {
  return `trktr.${quoteIdent(`lww_${t.oid}`)}`
}

/**
 * The table's trigger function: static SQL for this table's key and columns (cached plans).
 * Identifiers are quoted; nothing of the caller's text is pasted.
 */
export function triggerFunctionSql(t: LwwTable, writerToast = false): string {
  const rel = qualified(t.rel)
  const cols = (prefix: string, names: readonly string[]) =>
    names.map((c) => `${prefix}.${quoteIdent(c)}`).join(', ')
  const keyOf = (prefix: string) =>
    `jsonb_build_object(${t.pk.map((c) => `${quoteLiteral(c)}, ${prefix}.${quoteIdent(c)}`).join(', ')})`
  const match = (prefix: string) => `(${cols('x', t.pk)}) = (${cols(prefix, t.pk)})`
  // every column, the key's too: equal keys may be written differently (numeric 2.50 and 2.5)
  const update = `UPDATE ${rel} x SET (${t.columns.map(quoteIdent).join(', ')}) = ROW(${cols('NEW', t.columns)}) WHERE ${match('NEW')};`
  const queue = `INSERT INTO trktr.conflict_queue (relid, kind, key, local_image, local_row, local_ts, local_roident, remote_image, applying_roident)`
  return `
CREATE OR REPLACE FUNCTION ${functionName(t)}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE app oid; l_xmin xid; l_ts timestamptz; l_ro oid; l_img jsonb; l_row text; l_ctid tid;
BEGIN
  -- our own nested statements below
  IF pg_trigger_depth() > 1 THEN RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END IF;
  -- the origin this apply worker applies from, looked up once per worker
  app := nullif(current_setting('trktr.apply_roident', true), '')::oid;
  IF app IS NULL THEN
    SELECT o.roident INTO app FROM pg_stat_subscription s
      JOIN pg_replication_origin o ON o.roname = 'pg_' || s.subid
     WHERE s.pid = pg_backend_pid() LIMIT 1;
    IF app IS NULL THEN RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END IF;
    PERFORM set_config('trktr.apply_roident', app::text, false);
  END IF;
  IF TG_OP = 'INSERT' THEN
    ${displaceSql(t, 'insert')}
    -- locked: two apply workers bringing versions of one key at once must each queue the
    -- version it really displaced, not one read before the other committed
    SELECT x.xmin, to_jsonb(x.*), ROW(x.*)::text INTO l_xmin, l_img, l_row FROM ${rel} x WHERE ${match('NEW')} FOR UPDATE;
    IF NOT FOUND THEN RETURN NEW; END IF;
    SELECT c.timestamp, c.roident INTO l_ts, l_ro FROM pg_xact_commit_timestamp_origin(l_xmin) c;
    ${update}
    ${queue} VALUES (${t.oid}, 'insert_exists', ${keyOf('NEW')}, l_img, l_row, l_ts, l_ro, to_jsonb(NEW), app);
    RETURN NULL;
  END IF;
  -- the key-change trigger (BEFORE, armed only) fires for every update: a row holding the new
  -- key is moved out of the way; the origin test is the update-and-delete trigger's
  IF TG_NAME = ${quoteLiteral(KEY_TRIGGER)} THEN
    IF (${cols('NEW', t.pk)}) IS DISTINCT FROM (${cols('OLD', t.pk)}) THEN
      SELECT x.xmin, to_jsonb(x.*), ROW(x.*)::text INTO l_xmin, l_img, l_row FROM ${rel} x WHERE ${match('NEW')} FOR UPDATE;
      IF FOUND THEN
        SELECT c.timestamp, c.roident INTO l_ts, l_ro FROM pg_xact_commit_timestamp_origin(l_xmin) c;
        DELETE FROM ${rel} x WHERE ${match('NEW')};
        ${queue} VALUES (${t.oid}, 'update_exists', ${keyOf('NEW')}, l_img, l_row, l_ts, l_ro, to_jsonb(NEW), app);
      END IF;
    END IF;
    ${displaceSql(t, 'update')}
    RETURN NEW;
  END IF;
  -- the update-and-delete trigger (AFTER): OLD is the version this change displaced
  SELECT c.timestamp, c.roident INTO l_ts, l_ro FROM pg_xact_commit_timestamp_origin(OLD.xmin) c;
  ${writerToast ? '' : keptSql(t)}
  IF l_ro = app OR l_ts IS NULL THEN RETURN NULL; END IF;
  ${queue} VALUES (${t.oid},
    CASE WHEN TG_OP = 'DELETE' THEN 'delete_origin_differs' ELSE 'update_origin_differs' END,
    ${keyOf('OLD')}, to_jsonb(OLD), OLD::text, l_ts, l_ro, NULL, app);
  RETURN NULL;
END $fn$`
}

/**
 * The trigger's part for a unique index besides the primary key (armed branches only): a row
 * here holding the incoming row's values under another key is moved out of its way — deleted,
 * its version queued as `unique_insert` / `unique_update` with the index's values as the key —
 * so the incoming row and the rest of its transaction apply; the resolution round then keeps
 * the later writer's row (lww-schema.ts). Not on a table another table's foreign key
 * references: in an apply worker the delete would not check or act on the rows referencing it.
 */
function displaceSql(t: LwwTable, op: 'insert' | 'update'): string {
  if (t.referenced || t.uniques.length === 0) return ''
  const cols = (prefix: string, names: readonly string[]) =>
    `(${names.map((c) => `${prefix}.${quoteIdent(c)}`).join(', ')})`
  const notSelf =
    `${cols('x', t.pk)} IS DISTINCT FROM ${cols('NEW', t.pk)}` +
    (op === 'update' ? ` AND ${cols('x', t.pk)} IS DISTINCT FROM ${cols('OLD', t.pk)}` : '')
  return t.uniques
    .map((u) => {
      const same = u.nullsNotDistinct
        ? `${cols('x', u.columns)} IS NOT DISTINCT FROM ${cols('NEW', u.columns)}`
        : `${cols('x', u.columns)} = ${cols('NEW', u.columns)}`
      const changed =
        op === 'update'
          ? `${cols('NEW', u.columns)} IS DISTINCT FROM ${cols('OLD', u.columns)} AND `
          : ''
      const key = `jsonb_build_object(${u.columns.map((c) => `${quoteLiteral(c)}, NEW.${quoteIdent(c)}`).join(', ')})`
      return `IF ${changed}EXISTS (SELECT 1 FROM ${qualified(t.rel)} x WHERE ${same} AND ${notSelf}) THEN
      FOR l_ctid, l_xmin, l_img, l_row IN
        SELECT x.ctid, x.xmin, to_jsonb(x.*), ROW(x.*)::text FROM ${qualified(t.rel)} x WHERE ${same} AND ${notSelf} FOR UPDATE
      LOOP
        SELECT c.timestamp, c.roident INTO l_ts, l_ro FROM pg_xact_commit_timestamp_origin(l_xmin) c;
        DELETE FROM ${qualified(t.rel)} x WHERE x.ctid = l_ctid;
        INSERT INTO trktr.conflict_queue (relid, kind, key, local_image, local_row, local_ts, local_roident, remote_image, applying_roident)
          VALUES (${t.oid}, 'unique_${op}', ${key}, l_img, l_row, l_ts, l_ro, to_jsonb(NEW), app);
      END LOOP;
    END IF;`
    })
    .join('\n    ')
}

/**
 * In the caller's transaction: lock the table in the mode its triggers are made in, then read
 * its columns. Table first, as a cluster schema change does (its statement, then the triggers):
 * the other order deadlocked with it, and columns read before the lock could belong to a
 * schema change that committed meanwhile (a function naming a dropped column).
 */
export async function lockAndDescribe(
  q: Queryable,
  rel: RelationName,
): Promise<LwwTable | undefined> {
  await q.query(LOCK_TIMEOUT)
  await q.query(`LOCK TABLE ${qualified(rel)} IN SHARE ROW EXCLUSIVE MODE`)
  return await describeIn(q, rel)
}

/** describe() on a session or in a transaction (which may hold the table's lock). */
export async function describeIn(q: Queryable, rel: RelationName): Promise<LwwTable | undefined> {
  return await describe(
    {
      query: async (sql: string, params?: unknown[]) => (await q.query(sql, params)).rows as never,
    },
    rel,
  )
}

/**
 * Create (or re-create, after a column change) the triggers of one table. `writerToast`: the
 * writer re-writes kept out-of-line values (standalone mode; lww-local.ts localStatements).
 */
export async function install(q: Queryable, t: LwwTable, writerToast = false): Promise<void> {
  const rel = qualified(t.rel)
  // one round trip (simple protocol, no parameters: every name in it is quoted): a proposal's
  // prepare waits for it, and a dozen statements one by one took ~10 ms
  const statements = [
    LOCK_TIMEOUT,
    triggerFunctionSql(t, writerToast),
    ...REPLICA_TRIGGERS.map((name) => `DROP TRIGGER IF EXISTS ${name} ON ${rel}`),
    // AFTER: it only queues what a change displaced, and any BEFORE UPDATE row trigger, even a
    // disabled or replica-only one, makes every UPDATE on the table lock its row first (writer
    // and apply worker: a WAL record and ~1-3 µs a row; bench/README.md)
    `CREATE TRIGGER ${UD_TRIGGER} AFTER UPDATE OR DELETE ON ${rel} FOR EACH ROW WHEN (${OTHER_ORIGIN}) EXECUTE FUNCTION ${functionName(t)}()`,
    `ALTER TABLE ${rel} ENABLE REPLICA TRIGGER ${UD_TRIGGER}`,
    ...tombstoneStatements(t),
    ...localStatements(t, writerToast),
  ]
  await q.query(statements.join(';\n'))
}

/** Drop one table's row-level triggers (its resolver is no longer lww). */
export async function uninstall(q: Queryable, rel: RelationName): Promise<void> {
  const r = qualified(rel)
  await q.query(LOCK_TIMEOUT)
  const all = [...REPLICA_TRIGGERS, TOAST_TRIGGER, MOVE_TRIGGER, TRUNCATE_TRIGGER, TOMB_TRIGGER]
  for (const name of all) {
    await q.query(`DROP TRIGGER IF EXISTS ${name} ON ${r}`)
  }
}

/** Tables with triggers installed, and whether their insert branch is armed. */
const INSTALLED = prepared(
  'lww_installed',
  `
SELECT n.nspname AS schema, c.relname AS table, c.oid::int8 AS oid,
       bool_or(t.tgname = $2 AND t.tgenabled = 'R') AS armed
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname IN ($1, $2) AND t.tgparentid = 0 GROUP BY 1, 2, 3`,
)

export interface Installed {
  rel: RelationName
  oid: number
  armed: boolean
}

export async function installed(db: Db): Promise<Installed[]> {
  const rows = await db.query<{ schema: string; table: string; oid: string; armed: boolean }>(
    INSTALLED,
    [UD_TRIGGER, INS_TRIGGER],
  )
  return rows.map((r) => ({
    rel: { schema: r.schema, table: r.table },
    oid: Number(r.oid),
    armed: r.armed,
  }))
}

/** The replicated tables (committed), with the signature the installed function was made for. */
export async function replicated(db: Db): Promise<RelationName[]> {
  const rows = await db.query<{ schema_name: string; table_name: string }>(
    `SELECT schema_name, table_name FROM trktr.replicaset WHERE status IN ('committed', 'pending-remove')
     AND to_regclass(format('%I.%I', schema_name, table_name)) IS NOT NULL`,
  )
  return rows.map((r) => ({ schema: r.schema_name, table: r.table_name }))
}

/**
 * Arm (or disarm) the insert and key-change branches of a table: replica-only, as the others.
 * Their triggers exist only while armed: a BEFORE INSERT row trigger, even a disabled one,
 * makes COPY insert row by row instead of in batches (a join's copy took ~20 % longer), and a
 * BEFORE UPDATE one makes every UPDATE lock its row first.
 */
export async function arm(db: Db, rel: RelationName, on: boolean): Promise<void> {
  const name = qualified(rel)
  await db.tx(async (c) => {
    await c.query(LOCK_TIMEOUT)
    const { rows } = await c.query<{ oid: string }>(`SELECT $1::regclass::oid::int8 AS oid`, [name])
    const fn = functionName({ oid: Number(rows[0]?.oid) })
    await c.query(`DROP TRIGGER IF EXISTS ${INS_TRIGGER} ON ${name}`)
    await c.query(`DROP TRIGGER IF EXISTS ${KEY_TRIGGER} ON ${name}`)
    if (!on) return
    await c.query(
      `CREATE TRIGGER ${INS_TRIGGER} BEFORE INSERT ON ${name} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
    )
    await c.query(
      `CREATE TRIGGER ${KEY_TRIGGER} BEFORE UPDATE ON ${name} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
    )
    await c.query(
      `ALTER TABLE ${name} ENABLE REPLICA TRIGGER ${INS_TRIGGER}, ENABLE REPLICA TRIGGER ${KEY_TRIGGER}`,
    )
  })
}

/**
 * One resolution round, in a session kept for it: a repair sets a session origin (and resets
 * it); after an error the caller must not reuse the session.
 */
export async function resolveWith(q: Queryable): Promise<{ restored: number; recorded: number }> {
  const { rows } = await q.query<{ restored: number; recorded: number }>(`CALL trktr.lww_resolve()`)
  return { restored: rows[0]?.restored ?? 0, recorded: rows[0]?.recorded ?? 0 }
}

/**
 * Every partition's partitioned table, both as "schema.table" the way PostgreSQL prints them
 * unquoted in an apply error's context: an apply worker names the partition it writes into, the
 * replicaset (and the per-table resolver, the triggers, the check) the partitioned table.
 */
export async function partitionRoots(db: Db): Promise<Map<string, string>> {
  const rows = await db.query<{ leaf: string; root: string }>(
    `SELECT n.nspname || '.' || c.relname AS leaf, rn.nspname || '.' || r.relname AS root
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace
      WHERE c.relispartition`,
  )
  return new Map(rows.map((r) => [r.leaf, r.root]))
}

const QUEUE_NOT_EMPTY = prepared(
  'queue_not_empty',
  `SELECT EXISTS (SELECT 1 FROM trktr.conflict_queue) AS any`,
)

export async function queueNotEmpty(db: Db): Promise<boolean> {
  const [r] = await db.query<{ any: boolean }>(QUEUE_NOT_EMPTY)
  return r?.any ?? false
}

export async function queueDepth(db: Db): Promise<number> {
  const [r] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM trktr.conflict_queue`)
  return r?.n ?? 0
}

export * from './lww-kept.js'
export * from './lww-ledger.js'
export { pruneTombstones, tombstonesByKeys } from './lww-tombstones.js'
