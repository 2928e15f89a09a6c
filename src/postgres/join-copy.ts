// Joining with the cluster's data (issue 12; the procedure measured in pg17-facts.md §8). The
// joining node's subscriptions are created first, disabled, so their slots on the peers exist;
// a donor's replicated tables are held in SHARE mode for a moment while a REPEATABLE READ
// snapshot is exported together with the donor's WAL insert position and the remote LSNs of its
// subscriptions' origins. Every table is copied from that snapshot, the joining node's origins
// are advanced to those positions, and its subscriptions are enabled: each change is then in the
// copy or in a stream, never both, never neither.
//
// The copy is written in sessions tagged with a replication origin (trktr_join_<n>): an
// origin = none subscriber of this node never receives it, so a re-copy (resync) is not
// re-published. Its commit timestamp is JOIN_COMMIT_TS, older than any real write, so that
// row-level last-writer-wins lets every later version from a peer apply over a copied row.
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { bucketHashes, tableLayout } from './check-store.js'
import { BinaryCopyRows, textCopyRows } from './copy-rows.js'
import { type Db, pgError, type Queryable } from './db.js'
import { checkLsn, qualified, quoteIdent, quoteLiteral, type RelationName } from './ident.js'
import { connect } from './join-snapshot.js'
import { ensureOrigin } from './repair-store.js'

export * from './join-snapshot.js'

/** The commit timestamp of copied rows: older than any version a peer can send. */
export const JOIN_COMMIT_TS = '2000-01-01 00:00:00.000001+00'

export const JOIN_DDL = `
CREATE TABLE IF NOT EXISTS trktr.join_state (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  state text NOT NULL CHECK (state IN ('copying', 'done')),
  donor integer,
  started timestamptz NOT NULL DEFAULT now(),
  finished timestamptz
);
REVOKE ALL ON trktr.join_state FROM PUBLIC;`

export interface JoinMarker {
  state: 'copying' | 'done'
  donor: number | null
}

export async function readMarker(db: Db): Promise<JoinMarker | undefined> {
  await db.query(JOIN_DDL)
  const [r] = await db.query<{ state: 'copying' | 'done'; donor: number | null }>(
    `SELECT state, donor FROM trktr.join_state`,
  )
  return r ? { state: r.state, donor: r.donor } : undefined
}

export async function writeMarker(db: Db, state: JoinMarker['state'], donor: number | null) {
  await db.query(JOIN_DDL)
  await db.query(
    `INSERT INTO trktr.join_state (state, donor) VALUES ($1, $2)
     ON CONFLICT (only_row) DO UPDATE SET state = EXCLUDED.state, donor = EXCLUDED.donor,
       started = CASE WHEN EXCLUDED.state = 'copying' THEN now() ELSE trktr.join_state.started END,
       finished = CASE WHEN EXCLUDED.state = 'done' THEN now() END`,
    [state, donor],
  )
}

/** Forget the marker (a join that was refused leaves the node as it was). */
export async function deleteMarker(db: Db): Promise<void> {
  await db.query(JOIN_DDL)
  await db.query(`DELETE FROM trktr.join_state`)
}

/** The committed replicated tables that exist here. */
export async function replicatedTables(db: Db): Promise<RelationName[]> {
  const rows = await db.query<{ schema_name: string; table_name: string }>(
    `SELECT schema_name, table_name FROM trktr.replicaset WHERE status = 'committed'
       AND to_regclass(format('%I.%I', schema_name, table_name)) IS NOT NULL
     ORDER BY schema_name, table_name`,
  )
  return rows.map((r) => ({ schema: r.schema_name, table: r.table_name }))
}

/** Tables that hold rows, with their count (a table with none is not listed). */
export async function occupied(
  db: Db,
  rels: readonly RelationName[],
): Promise<Array<{ rel: RelationName; rows: number }>> {
  const out: Array<{ rel: RelationName; rows: number }> = []
  for (const rel of rels) {
    if (!(await hasRows(db, rel))) continue
    const [c] = await db.query<{ n: string }>(`SELECT count(*)::int8 AS n FROM ${qualified(rel)}`)
    out.push({ rel, rows: Number(c?.n ?? 0) })
  }
  return out
}

/** What a table holds, as the consistency check hashes it: row count and one hash of all rows. */
export interface TableContent {
  /** null: it holds rows, too many to hash in the time given */
  rows: number | null
  hash: string
}

export async function hasRows(db: Db, rel: RelationName): Promise<boolean> {
  const [any] = await db.query(`SELECT 1 FROM ${qualified(rel)} LIMIT 1`)
  return any !== undefined
}

export async function tableContent(
  db: Db,
  rel: RelationName,
  timeoutMs = 120_000,
): Promise<TableContent> {
  // an empty table (the usual case) in one round trip
  if (!(await hasRows(db, rel))) return { rows: 0, hash: '' }
  const h = await bucketHashes(db, await tableLayout(db, rel), { bits: 0, timeoutMs }, 1)
  return { rows: h.rows, hash: h.hashes[0] ?? '' }
}

/** Columns a COPY carries: in order, generated and dropped ones left out. */
export async function copyColumns(db: Db, rel: RelationName): Promise<string[]> {
  const [r] = await db.query<{ cols: string[] }>(
    `SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attgenerated = '' ORDER BY a.attnum) AS cols`,
    [qualified(rel)],
  )
  return r?.cols ?? []
}

/** May this node's role write as an apply worker does (session_replication_role = replica)? */
export async function canSetReplicaRole(db: Db): Promise<boolean> {
  return await db.session(async (c) => {
    try {
      await c.query(`SET session_replication_role = replica`)
      return true
    } catch {
      return false
    }
  })
}

async function partitioned(c: Queryable, rel: RelationName): Promise<boolean> {
  const { rows } = await c.query<{ p: boolean }>(
    `SELECT c.relkind = 'p' AS p FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [qualified(rel)],
  )
  return rows[0]?.p === true
}

/** Every column's type is one of PostgreSQL's own (a binary COPY reads what the other sent). */
async function builtinTypesOnly(
  c: Queryable,
  rel: RelationName,
  columns: readonly string[],
): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>(
    `SELECT coalesce(bool_and(a.atttypid < 16384), false) AS ok FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attname = ANY ($2::text[]) AND NOT a.attisdropped`,
    [qualified(rel), columns],
  )
  return rows[0]?.ok === true
}

/** This server's WAL insert position now. */
export async function walInsertLsn(db: Db): Promise<string> {
  const [r] = await db.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)
  return r?.lsn ?? '0/0'
}

/** Which of these replication slots exist on this server. */
export async function slotsPresent(db: Db, names: readonly string[]): Promise<string[]> {
  const rows = await db.query<{ slot_name: string }>(
    `SELECT slot_name FROM pg_replication_slots WHERE slot_name = ANY ($1::text[])`,
    [names],
  )
  return rows.map((r) => r.slot_name)
}

/**
 * Empty a table in the caller's open transaction (origin set up, replica role if it may).
 * TRUNCATE gives the table a fresh file, so a COPY after it runs as into a new table; a DELETE
 * of a million rows then a COPY of them in one transaction took twice as long (every new key
 * checked against the deleted ones). TRUNCATE is not possible for a table another references by
 * foreign key, and it must not wait on a writer (a writer waiting on the join's fence holds a
 * lock on the table): then, or when truncate is false (a resync: a live node's readers keep
 * reading), DELETE.
 */
export async function emptyTable(
  c: Queryable,
  rel: RelationName,
  truncate: boolean,
): Promise<void> {
  const name = qualified(rel)
  const { rows } = await c.query(`SELECT 1 FROM ${name} LIMIT 1`)
  if (rows.length === 0) return
  if (truncate) {
    await c.query('SAVEPOINT trktr_empty')
    try {
      await c.query(`SET LOCAL lock_timeout = ${TRUNCATE_LOCK_TIMEOUT_MS}`)
      await c.query(`TRUNCATE ${name}`)
      await c.query('RELEASE SAVEPOINT trktr_empty')
      return
    } catch {
      await c.query('ROLLBACK TO SAVEPOINT trktr_empty')
    }
  }
  await c.query(`DELETE FROM ${name}`)
}

const TRUNCATE_LOCK_TIMEOUT_MS = 1000

export interface CopyInit {
  donorConninfo: string
  localConninfo: string
  appName: string
  /** the donor's exported snapshot (a join); absent: a snapshot of its own (a fenced table) */
  snapshot?: string
  rel: RelationName
  columns: readonly string[]
  /** the replication origin the local session writes under (one per concurrent copy) */
  origin: string
  /** rows already here (an interrupted copy, a resync) are removed in the same transaction */
  clear: boolean
  /** remove them by TRUNCATE where it may (a join: nobody reads the table yet), not DELETE */
  truncate?: boolean
  onRows?: (n: number) => void
  signal?: AbortSignal
}

const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$/i

/**
 * Copy one table from the donor's snapshot in one local transaction: the table ends complete
 * or unchanged. Ordinary triggers (fences, foreign keys, the user's) do not fire, as in an
 * apply worker, when the role may set session_replication_role.
 */
export async function copyTable(
  init: CopyInit,
): Promise<{ rows: number; replicaRole: boolean; binary: boolean }> {
  const { snapshot } = init
  if (snapshot !== undefined && !SNAPSHOT_ID.test(snapshot))
    throw new Error(`not a snapshot id: ${snapshot}`)
  const cols = init.columns.map(quoteIdent).join(', ')
  const rel = qualified(init.rel)
  init.signal?.throwIfAborted()
  const src = await connect(init.donorConninfo, `${init.appName}-copy-out`)
  let dst: pg.Client | undefined
  // ending both sessions fails the pipeline; the local transaction rolls back with its session
  const abort = () => {
    void src.end().catch(() => undefined)
    void dst?.end().catch(() => undefined)
  }
  init.signal?.addEventListener('abort', abort)
  try {
    dst = await connect(init.localConninfo, `${init.appName}-copy-in`)
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    if (snapshot !== undefined)
      await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`)
    let replicaRole = true
    try {
      await dst.query(`SET session_replication_role = replica`)
    } catch (err) {
      if ((err as { code?: string }).code !== '42501') throw err
      replicaRole = false
    }
    await ensureOrigin(dst, init.origin)
    await dst.query('BEGIN')
    await dst.query(`SELECT pg_replication_origin_session_setup($1)`, [init.origin])
    await dst.query(`SELECT pg_replication_origin_xact_setup('0/0', $1::timestamptz)`, [
      JOIN_COMMIT_TS,
    ])
    if (init.clear) await emptyTable(dst, init.rel, init.truncate === true)
    // binary where every column has a built-in type: a third less time than text at 1,000,000
    // rows (no parsing on either side) and the same bytes on both servers; a user-defined type
    // goes as text, which does not depend on how each server's extension sends it
    const binary = await builtinTypesOnly(dst, init.rel, init.columns)
    const format = binary ? ' WITH (FORMAT binary)' : ''
    const counter = binary ? new BinaryCopyRows() : undefined
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        const n = counter ? counter.push(chunk) : textCopyRows(chunk)
        if (n > 0) init.onRows?.(n)
        done(null, chunk)
      },
    })
    const into = dst.query(copyFrom(`COPY ${rel} (${cols}) FROM STDIN${format}`))
    // PostgreSQL copies a partitioned table out only through a query (into it, directly)
    const from = (await partitioned(src, init.rel))
      ? `(SELECT ${cols} FROM ${rel})`
      : `${rel} (${cols})`
    await pipeline(src.query(copyTo(`COPY ${from} TO STDOUT${format}`)), count, into)
    await dst.query('COMMIT')
    await dst.query(`SELECT pg_replication_origin_session_reset()`)
    await src.query('COMMIT')
    return { rows: into.rowCount, replicaRole, binary }
  } catch (err) {
    throw pgError(err, `copy ${rel} from the donor`)
  } finally {
    init.signal?.removeEventListener('abort', abort)
    await src.end().catch(() => undefined)
    await dst?.end().catch(() => undefined)
  }
}

/**
 * Start each subscription where the copy ended: its origin advanced to the position the donor's
 * snapshot holds for that peer (null: leave it, the slot starts after the copy), then enabled.
 */
export async function advanceAndEnable(
  db: Db,
  positions: ReadonlyArray<{ subscription: string; lsn: string | null }>,
): Promise<void> {
  for (const p of positions) {
    if (p.lsn === null) continue
    await db.query(
      `SELECT pg_replication_origin_advance('pg_' || oid, $2::pg_lsn) FROM pg_subscription
       WHERE subname = $1`,
      [p.subscription, checkLsn(p.lsn)],
    )
  }
  for (const p of positions) {
    await db.query(`ALTER SUBSCRIPTION ${quoteIdent(p.subscription)} ENABLE`)
  }
}
