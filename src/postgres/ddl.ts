// Cluster DDL on one node (README "Changing the schema"): a dry run that tells what a statement
// touches, then the statement for real inside a transaction that is PREPAREd (it holds its
// locks, so neither writers nor apply workers see a half-changed cluster) and later committed
// or rolled back by the proposal's decision. The user's statement is sent to PostgreSQL as
// given, alone, through the extended protocol (a second statement is refused by the server);
// nothing is spliced into it.
import type pg from 'pg'
import { TraktorError } from '../errors.js'
import type { Db, HeldSession, Queryable } from './db.js'
import { type DdlKind, leadingWords } from './ddl-statement.js'
import { FENCE_TRIGGER } from './fence.js'
import { qualified, quoteLiteral, type RelationName } from './ident.js'
import { dropTriggerBlockingAlter } from './lww-local.js'

export interface DdlSpec {
  sql: string
  kind: DdlKind
  /** replicated tables the statement changes: fenced and drained on every node first */
  fenced: RelationName[]
  /** tables it creates (they join the replicaset right after) */
  created: RelationName[]
  /** replicated tables it drops (they leave the replicaset with it) */
  dropped: RelationName[]
}

export interface DdlEffects {
  /** tables (replicated or not) the statement locked beyond reading */
  touched: RelationName[]
  /** the replicated ones among them */
  replicated: RelationName[]
  /** `partition`: a partition of another table, replicated with it (publish_via_partition_root) */
  created: Array<
    RelationName & { permanent: boolean; primaryKey: boolean; rows: boolean; partition: boolean }
  >
  dropped: RelationName[]
  /** replicated tables that now have another name or schema */
  renamed: Array<{ from: RelationName; to: RelationName }>
}

export const ddlGid = (id: string): string => `trktr_ddl_${id}`

interface Before {
  replicated: Map<string, RelationName>
  tables: string[]
}

const REPLICATED = `
SELECT c.oid::int8::text AS oid, r.schema_name AS schema, r.table_name AS table
FROM trktr.replicaset r
JOIN pg_namespace n ON n.nspname = r.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
WHERE r.status = 'committed'`

const TABLE_OIDS = `SELECT COALESCE(array_agg(oid::int8::text), '{}') AS oids FROM pg_class WHERE relkind IN ('r', 'p')`

const TOUCHED = `
SELECT DISTINCT l.relation::int8::text AS oid, n.nspname AS schema, c.relname AS table
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND l.mode <> 'AccessShareLock' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (c.oid IS NULL OR (c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'trktr', 'information_schema')))`

const NOW_NAMED = `
SELECT c.oid::int8::text AS oid, n.nspname AS schema, c.relname AS table
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid::int8::text = ANY($1::text[])`

const CREATED = `
SELECT n.nspname AS schema, c.relname AS table, c.relpersistence = 'p' AS permanent,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
       c.relispartition AS partition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.xmin = xid(pg_current_xact_id())
  AND NOT (c.oid::int8::text = ANY($1::text[]))
ORDER BY 1, 2`

async function before(c: Queryable): Promise<Before> {
  const rows = (await c.query<{ oid: string; schema: string; table: string }>(REPLICATED)).rows
  const [t] = (await c.query<{ oids: string[] }>(TABLE_OIDS)).rows
  return {
    replicated: new Map(rows.map((r) => [r.oid, { schema: r.schema, table: r.table }])),
    tables: t?.oids ?? [],
  }
}

async function effects(c: Queryable, b: Before): Promise<DdlEffects> {
  const locked = (
    await c.query<{ oid: string; schema: string | null; table: string | null }>(TOUCHED)
  ).rows
  const touched: RelationName[] = []
  const replicated: RelationName[] = []
  for (const l of locked) {
    const was = b.replicated.get(l.oid)
    if (was) replicated.push(was)
    if (was) touched.push(was)
    else if (l.schema !== null && l.table !== null)
      touched.push({ schema: l.schema, table: l.table })
  }
  const oids = [...b.replicated.keys()]
  const named = new Map(
    (await c.query<{ oid: string; schema: string; table: string }>(NOW_NAMED, [oids])).rows.map(
      (r) => [r.oid, { schema: r.schema, table: r.table }],
    ),
  )
  const dropped: RelationName[] = []
  const renamed: DdlEffects['renamed'] = []
  for (const [oid, rel] of b.replicated) {
    const now = named.get(oid)
    if (!now) dropped.push(rel)
    else if (now.schema !== rel.schema || now.table !== rel.table)
      renamed.push({ from: rel, to: now })
  }
  const created: DdlEffects['created'] = []
  for (const r of (
    await c.query<{
      schema: string
      table: string
      permanent: boolean
      primary_key: boolean
      partition: boolean
    }>(CREATED, [b.tables])
  ).rows) {
    const rel = { schema: r.schema, table: r.table }
    const [x] = (
      await c.query<{ rows: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${qualified(rel)}) AS rows`)
    ).rows
    created.push({
      ...rel,
      permanent: r.permanent,
      primaryKey: r.primary_key,
      rows: x?.rows === true,
      partition: r.partition,
    })
  }
  return { touched, replicated, created, dropped, renamed }
}

/** The statement alone, through the extended protocol: PostgreSQL refuses a second one. */
const statement = (sql: string) => ({ text: sql, queryMode: 'extended' }) as pg.QueryConfig

function isAlterTable(sql: string): boolean {
  const [a, b] = leadingWords(sql, 2)
  return a === 'ALTER' && b === 'TABLE'
}

/**
 * Run the user's statement in the open transaction. A column's type cannot change while one
 * of the row-level triggers names it: that trigger goes (rolled back to before the statement,
 * dropped, the statement run again) and is made again for the new types after it.
 */
async function runStatement(c: Queryable, sql: string): Promise<void> {
  // ALTER TABLE only: a table created in a subtransaction would not be seen as created here
  if (!isAlterTable(sql)) {
    await c.query(statement(sql))
    return
  }
  for (let attempt = 0; ; attempt++) {
    await c.query('SAVEPOINT trktr_statement')
    try {
      await c.query(statement(sql))
      await c.query('RELEASE SAVEPOINT trktr_statement')
      return
    } catch (err) {
      await c.query('ROLLBACK TO SAVEPOINT trktr_statement')
      if (attempt >= 4 || !(await dropTriggerBlockingAlter(c, err))) throw err
    }
  }
}

/** PostgreSQL's own words for a statement that failed, with its SQLSTATE (`sqlState`). */
export function ddlError(err: unknown): TraktorError {
  if (err instanceof TraktorError) return err
  const e = err as { code?: unknown; message?: unknown }
  const sqlState = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
  const message = typeof e.message === 'string' ? e.message : String(err)
  return new TraktorError('ERR_DDL', sqlState ? `${message} (SQLSTATE ${sqlState})` : message, {
    cause: err,
    ...(sqlState ? { sqlState } : {}),
  })
}

async function open(c: Queryable, lockTimeoutMs: number, statementTimeoutMs: number) {
  await c.query('BEGIN')
  await c.query(
    `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true),
                        set_config('trktr.cluster_ddl', 'on', true)`,
    [`${Math.round(lockTimeoutMs)}ms`, `${Math.round(statementTimeoutMs)}ms`],
  )
}

/**
 * Run the statement in a transaction that is rolled back, and tell what it did: the coordinator
 * learns which replicated tables to fence, and which tables it creates or drops, before any node
 * is asked. Throws PostgreSQL's error when the statement fails here.
 */
export async function inspectDdl(
  db: Db,
  sql: string,
  t: { lockTimeoutMs: number; statementTimeoutMs: number },
): Promise<DdlEffects> {
  return await db.session(async (c) => {
    try {
      await open(c, t.lockTimeoutMs, t.statementTimeoutMs)
      const b = await before(c)
      await runStatement(c, sql).catch((err: unknown) => {
        throw ddlError(err)
      })
      return await effects(c, b)
    } finally {
      await c.query('ROLLBACK').catch(() => undefined)
    }
  })
}

export interface PrepareDdlOpts {
  id: string
  coordinator: number
  spec: DdlSpec
  lockTimeoutMs: number
  statementTimeoutMs: number
  /** called once when the statement waits for a lock (the fence's waiting writers hold it) */
  onLockWait: () => Promise<void>
  /** how often to look whether the statement waits for a lock */
  pollMs?: number
  /** re-make a changed table's row-level triggers in the same transaction */
  remake?: (q: Queryable, rel: RelationName) => Promise<void>
}

/**
 * Run the statement for real and PREPARE it: afterwards its locks are held by the prepared
 * transaction (no writer, no apply worker touches the tables) until the decision commits or
 * rolls it back. In the same transaction: the fence triggers go (writers waiting behind the
 * prepared locks continue on the new schema once it commits), dropped tables leave the
 * replicaset, and trktr.ddl_log records the change (how a commit is known to have happened).
 * Refuses (and rolls back) when the statement touched a replicated table the coordinator did
 * not fence, or renamed one.
 */
export async function prepareDdl(db: Db, o: PrepareDdlOpts): Promise<void> {
  const held: HeldSession = await db.hold()
  try {
    await open(held, o.lockTimeoutMs, o.statementTimeoutMs)
    const [me] = (await held.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows
    const b = await before(held)
    let done = false
    const running = runStatement(held, o.spec.sql).finally(() => {
      done = true
    })
    let told = false
    while (!done) {
      await Promise.race([running.catch(() => undefined), sleep(o.pollMs ?? 20)])
      if (done || told) continue
      const [w] = await db.query<{ waiting: boolean }>(
        `SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`,
        [me?.pid],
      )
      if (w?.waiting) {
        told = true
        await o.onLockWait()
      }
    }
    await running
    const e = await effects(held, b)
    const same = (a: RelationName) => (x: RelationName) =>
      x.schema === a.schema && x.table === a.table
    const unfenced = e.replicated.filter((r) => !o.spec.fenced.some(same(r)))
    if (unfenced.length > 0)
      throw new Error(
        `the statement changes replicated table ${unfenced.map((r) => `${r.schema}.${r.table}`).join(', ')} here, which the coordinator did not fence`,
      )
    if (e.renamed.length > 0)
      throw new Error(
        `the statement renames replicated table ${e.renamed[0]?.from.schema}.${e.renamed[0]?.from.table}: remove it from the replicaset first`,
      )
    for (const rel of e.dropped) {
      await held.query(`DELETE FROM trktr.replicaset WHERE schema_name = $1 AND table_name = $2`, [
        rel.schema,
        rel.table,
      ])
    }
    for (const rel of o.spec.fenced) {
      if (e.dropped.some(same(rel))) continue
      await held.query(`DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified(rel)}`)
      await o.remake?.(held, rel)
    }
    await held.query(
      `INSERT INTO trktr.ddl_log (id, sql, kind, coordinator) VALUES ($1, $2, $3, $4)`,
      [o.id, o.spec.sql, o.spec.kind, o.coordinator],
    )
    await held.query(`PREPARE TRANSACTION ${quoteLiteral(ddlGid(o.id))}`)
    held.release()
  } catch (err) {
    await held.query('ROLLBACK').catch(() => undefined)
    held.release(true)
    throw ddlError(err)
  }
}

async function prepared(db: Db, id: string): Promise<boolean> {
  const rows = await db.query(
    `SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()`,
    [ddlGid(id)],
  )
  return rows.length > 0
}

/**
 * Commit the prepared statement (idempotent), then move the replicaset version. Throws when the
 * change was neither prepared nor committed here: a commit must not pass silently.
 */
export async function commitDdl(db: Db, id: string, version: number): Promise<void> {
  // a step and the recovery pass may commit at once: the one that finds it gone checks the log
  const committed = (await prepared(db, id))
    ? await db.query(`COMMIT PREPARED ${quoteLiteral(ddlGid(id))}`).then(
        () => true,
        () => false,
      )
    : false
  if (!committed) {
    const done = await db.query(`SELECT 1 FROM trktr.ddl_log WHERE id = $1`, [id])
    if (done.length === 0)
      throw new Error(
        `schema change ${id} was decided COMMIT but its prepared transaction is not here (rolled back by hand?)`,
      )
  }
  await db.tx(async (c) => {
    await c.query(
      `UPDATE trktr.cluster SET replicaset_version = greatest(replicaset_version, $1)`,
      [version],
    )
    await c.query(`UPDATE trktr.proposals SET applied = true WHERE id = $1`, [id])
  })
}

/** Roll the prepared statement back, if it is prepared here (idempotent). */
export async function rollbackDdl(db: Db, id: string): Promise<boolean> {
  if (!(await prepared(db, id))) return false
  await db.query(`ROLLBACK PREPARED ${quoteLiteral(ddlGid(id))}`)
  return true
}

/**
 * Schema changes decided ABORT here whose prepared statement is still held: an ABORT recorded
 * while answering a member's question, before this node's own recovery pass rolled it back.
 */
export async function abortedButPrepared(db: Db): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `SELECT p.id::text AS id
       FROM trktr.proposals p
       JOIN pg_prepared_xacts x
         ON x.gid = $1 || p.id::text AND x.database = current_database()
      WHERE p.decision = 'abort'`,
    [ddlGid('')],
  )
  return rows.map((r) => r.id)
}

export interface DdlLogEntry {
  id: string
  sql: string
  kind: string
  coordinator: number
  at: string
}

/** The schema changes this node committed, newest first. */
export async function ddlLog(db: Db, limit = 100): Promise<DdlLogEntry[]> {
  const rows = await db.query<{
    id: string
    sql: string
    kind: string
    coordinator: number
    at: Date
  }>(
    `SELECT id, sql, kind, coordinator, prepared AS at FROM trktr.ddl_log ORDER BY prepared DESC LIMIT $1`,
    [limit],
  )
  return rows.map((r) => ({ ...r, at: r.at.toISOString() }))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
