// The replicaset: the tables in this node's publication. TRAKTOR's meanings: a PUT stages
// 'pending-add', a DELETE stages 'pending-remove', and a commit applies every staged change
// to the publication in one transaction (TRAKTOR's own commit was a no-op: a label mismatch).
import { ConflictError } from '../errors.js'
import type { Db, Queryable, Row } from './db.js'
import { formatRelation, qualified, quoteIdent, quoteLiteral, type RelationName } from './ident.js'
import { CREATE_PUBLICATION, PUBLICATION } from './schema.js'

export type ReplicasetStatus = 'pending-add' | 'committed' | 'pending-remove'

export interface ReplicasetEntry {
  relation: string
  status: ReplicasetStatus
}

/** What makes a table replicable here; the column signature is compared across nodes. */
export interface TableInfo {
  relation: string
  owner: string
  ownedByUs: boolean
  hasPrimaryKey: boolean
  /** 'p' permanent, 'u' unlogged, 't' temporary (pg_class.relpersistence) */
  persistence: string
  /** the arbiter role may use the table's schema */
  schemaUsage: boolean
  /** "name:type" per column, in column order */
  columns: string[]
}

/** The table's facts as one row of json (null: no such table), schema and table as given. */
export const tableInfoJson = (schema: string, table: string) => `(SELECT row_to_json(i) FROM (
SELECT pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(current_user, c.relowner, 'USAGE') AS owned,
       c.relkind::text AS kind, c.relpersistence::text AS persistence,
       has_schema_privilege(current_user, n.oid, 'USAGE') AS usage,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS pk,
       ARRAY(SELECT a.attname || ':' || format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ${schema} AND c.relname = ${table}) i)`

const TABLE_INFO = `SELECT ${tableInfoJson('$1', '$2')} AS info, current_user AS role`

/** tableInfoJson's row, as this node read it */
export interface TableInfoRow {
  owner: string
  owned: boolean
  kind: string
  persistence: string
  usage: boolean
  pk: boolean
  columns: string[]
}

export async function tableInfo(db: Db, rel: RelationName): Promise<TableInfo | undefined> {
  const [r] = await db.query<{ info: TableInfoRow | null }>(TABLE_INFO, [rel.schema, rel.table])
  return infoOf(rel, r?.info ?? null)
}

function infoOf(rel: RelationName, r: TableInfoRow | null): TableInfo | undefined {
  if (!r) return undefined
  if (r.kind !== 'r' && r.kind !== 'p') {
    throw new ConflictError(`${formatRelation(rel)} is not a table`, 'ERR_NOT_A_TABLE')
  }
  return {
    relation: formatRelation(rel),
    owner: r.owner,
    ownedByUs: r.owned,
    hasPrimaryKey: r.pk,
    persistence: r.persistence,
    schemaUsage: r.usage,
    columns: r.columns,
  }
}

/** The reasons a table cannot join the replicaset here, or [] if it can (no I/O). */
export function refusals(rel: RelationName, info: TableInfo | undefined, role: string): string[] {
  const name = formatRelation(rel)
  if (!info) return [`table ${name} does not exist`]
  const out: string[] = []
  if (!info.schemaUsage) {
    out.push(
      `the arbiter role ${role} has no USAGE on schema ${quoteIdent(rel.schema)} (GRANT USAGE ON SCHEMA ${quoteIdent(rel.schema)} TO ${quoteIdent(role)})`,
    )
  }
  if (!info.ownedByUs)
    out.push(`table ${name} is owned by ${info.owner}, not by the arbiter role ${role}`)
  if (!info.hasPrimaryKey) out.push(`table ${name} has no primary key`)
  if (info.persistence === 'u') {
    out.push(
      `table ${name} is UNLOGGED: PostgreSQL cannot replicate it (ALTER TABLE ${qualified(rel)} SET LOGGED)`,
    )
  }
  if (info.persistence === 't') out.push(`table ${name} is temporary: it cannot be replicated`)
  return out
}

/**
 * Everything that keeps a table from being replicated here, named exactly: the checks above,
 * a different column signature than `expected` (from node `from`), and a trial
 * ALTER PUBLICATION ... ADD TABLE, rolled back, for whatever else PostgreSQL refuses.
 */
export async function tableProblems(
  db: Db,
  rel: RelationName,
  expected?: { columns: readonly string[]; from: number },
  opts: { trial?: boolean } = {},
): Promise<string[]> {
  const [r] = await db.query<{ info: TableInfoRow | null; role: string }>(TABLE_INFO, [
    rel.schema,
    rel.table,
  ])
  const why = problemsOf(rel, r?.info ?? null, r?.role ?? '?', expected)
  if (why.length > 0) return why
  if (opts.trial === false) return []
  const c = await db.hold()
  let clean = false
  try {
    await c.query('BEGIN')
    const trial = await trialPublishIn(c, rel)
    await c.query('ROLLBACK')
    clean = true
    return trial === undefined ? [] : [trial]
  } finally {
    c.release(!clean)
  }
}

/**
 * Why the table cannot join the replicaset here as its row says (refusals), or whose columns
 * differ from `expected` (node `from`'s); [] if neither.
 */
export function problemsOf(
  rel: RelationName,
  row: TableInfoRow | null,
  role: string,
  expected?: { columns: readonly string[]; from: number },
): string[] {
  let info: TableInfo | undefined
  try {
    info = infoOf(rel, row)
  } catch (err) {
    if (err instanceof ConflictError) return [err.message]
    throw err
  }
  const why = refusals(rel, info, role)
  if (why.length > 0 || !info) return why
  if (expected && info.columns.join(', ') !== expected.columns.join(', ')) {
    return [
      `table ${formatRelation(rel)} differs: here (${info.columns.join(', ')}), on node ${expected.from} (${expected.columns.join(', ')})`,
    ]
  }
  return []
}

/**
 * Inside the caller's transaction: ALTER PUBLICATION ... ADD TABLE under a savepoint, always
 * rolled back to it. Returns why PostgreSQL would refuse to publish the table, if it would.
 */
export async function trialPublishIn(c: Queryable, rel: RelationName): Promise<string | undefined> {
  try {
    // one round trip when it can be published (an error skips the rest of the text)
    await c.query(
      `SAVEPOINT trktr_trial; SET LOCAL lock_timeout = 2000;
       ALTER PUBLICATION ${quoteIdent(PUBLICATION)} ADD TABLE ${qualified(rel)};
       ROLLBACK TO SAVEPOINT trktr_trial`,
    )
    return undefined
  } catch (err) {
    await c.query('ROLLBACK TO SAVEPOINT trktr_trial')
    const e = err as { message?: string; detail?: string; code?: string; sqlState?: string }
    // already in the publication (a change committed here meanwhile): publishable
    if ((e.sqlState ?? e.code) === '42710') return undefined
    const detail = e.detail ? ` (${e.detail})` : ''
    return `table ${formatRelation(rel)} cannot be published here: ${e.message ?? String(err)}${detail}`
  }
}

/** Stage a table for addition. Already committed or pending-add: nothing to do. */
export async function stageAdd(db: Db, rel: RelationName): Promise<ReplicasetStatus> {
  const reasons = await tableProblems(db, rel)
  if (reasons.length > 0) throw new ConflictError(reasons.join('; '), 'ERR_TABLE_REFUSED')
  const rows = await db.query<{ status: ReplicasetStatus }>(
    `INSERT INTO trktr.replicaset (schema_name, table_name, status) VALUES ($1, $2, 'pending-add')
     ON CONFLICT (schema_name, table_name) DO UPDATE
       SET status = CASE WHEN trktr.replicaset.status = 'pending-remove' THEN 'committed'
                         ELSE trktr.replicaset.status END
     RETURNING status`,
    [rel.schema, rel.table],
  )
  return rows[0]?.status ?? 'pending-add'
}

/**
 * Stage a table for removal. A pending-add is simply unstaged; a table that is not in the
 * replicaset is nothing to remove (not an error); a table that does not exist is a 409.
 */
export async function stageRemove(db: Db, rel: RelationName): Promise<ReplicasetStatus | 'absent'> {
  const rows = await db.query<{ status: ReplicasetStatus }>(
    `SELECT status FROM trktr.replicaset WHERE schema_name = $1 AND table_name = $2`,
    [rel.schema, rel.table],
  )
  const current = rows[0]?.status
  if (current === undefined) {
    if (!(await tableInfo(db, rel))) {
      throw new ConflictError(`table ${formatRelation(rel)} does not exist`, 'ERR_TABLE_REFUSED')
    }
    return 'absent'
  }
  if (current === 'pending-add') {
    await db.query(`DELETE FROM trktr.replicaset WHERE schema_name = $1 AND table_name = $2`, [
      rel.schema,
      rel.table,
    ])
    return 'absent'
  }
  await db.query(
    `UPDATE trktr.replicaset SET status = 'pending-remove', staged = now()
     WHERE schema_name = $1 AND table_name = $2`,
    [rel.schema, rel.table],
  )
  return 'pending-remove'
}

export interface CommitResult {
  added: string[]
  removed: string[]
}

/** Apply every staged change to the publication, in one transaction. */
export async function commitStaged(db: Db): Promise<CommitResult> {
  return await db.tx(async (c) => {
    const staged = (
      await c.query<{ schema_name: string; table_name: string; status: ReplicasetStatus }>(
        `SELECT schema_name, table_name, status FROM trktr.replicaset
         WHERE status <> 'committed' ORDER BY schema_name, table_name FOR UPDATE`,
      )
    ).rows
    const result: CommitResult = { added: [], removed: [] }
    for (const s of staged) {
      const rel = { schema: s.schema_name, table: s.table_name }
      if (s.status === 'pending-add') {
        await addToPublication(c, rel)
        result.added.push(formatRelation(rel))
      } else {
        await removeFromPublication(c, rel)
        result.removed.push(formatRelation(rel))
      }
    }
    await c.query(`DELETE FROM trktr.replicaset WHERE status = 'pending-remove'`)
    await c.query(
      `UPDATE trktr.replicaset SET status = 'committed', committed = now() WHERE status = 'pending-add'`,
    )
    return result
  })
}

export async function addToPublication(c: Queryable, rel: RelationName): Promise<void> {
  const present = await c.query(
    `SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
    [PUBLICATION, rel.schema, rel.table],
  )
  if (present.rowCount === 0) {
    await c.query(`ALTER PUBLICATION ${quoteIdent(PUBLICATION)} ADD TABLE ${qualified(rel)}`)
  }
}

export async function removeFromPublication(c: Queryable, rel: RelationName): Promise<void> {
  const present = await c.query(
    `SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
    [PUBLICATION, rel.schema, rel.table],
  )
  if ((present.rowCount ?? 0) > 0) {
    await c.query(`ALTER PUBLICATION ${quoteIdent(PUBLICATION)} DROP TABLE ${qualified(rel)}`)
  }
}

export async function replicasetStatus(db: Db): Promise<ReplicasetEntry[]> {
  const rows = await db.query<{
    schema_name: string
    table_name: string
    status: ReplicasetStatus
  }>(
    `SELECT schema_name, table_name, status FROM trktr.replicaset ORDER BY schema_name, table_name`,
  )
  return rows.map((r) => ({
    relation: formatRelation({ schema: r.schema_name, table: r.table_name }),
    status: r.status,
  }))
}

/**
 * Tell the arbiters that subscribe to this node that the publication changed; 'recreated'
 * means their slots here cannot go on (PostgreSQL 17 cannot decode past a dropped
 * publication) and their subscriptions must be made anew.
 */
export async function notifyPublicationChanged(
  db: Db,
  what: 'changed' | 'recreated' = 'changed',
): Promise<void> {
  await db.query(`SELECT pg_notify('trktr_publication', $1)`, [what])
}

/** the replicated tables that exist (what the publication should hold) */
const WANT = `
  SELECT r.schema_name::text AS s, r.table_name::text AS t FROM trktr.replicaset r
  WHERE r.status IN ('committed', 'pending-remove')
    AND to_regclass(format('%I.%I', r.schema_name, r.table_name)) IS NOT NULL`

const PUB = quoteLiteral(PUBLICATION)
/** the tables the publication holds */
const HAVE = `SELECT schemaname::text AS s, tablename::text AS t FROM pg_publication_tables WHERE pubname = ${PUB}`

/**
 * One boolean expression: the publication is gone or differs from the replicaset. The health
 * watch's query asks it every cycle, so an idle node does not spend a query of its own on the
 * guard (publication-guard.ts), which runs only when it is true.
 */
export const PUBLICATION_DRIFTED = `(NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ${PUB})
  OR EXISTS ((${WANT}) EXCEPT (${HAVE})) OR EXISTS ((${HAVE}) EXCEPT (${WANT})))`

/** What the publication should hold (the replicaset) against what it holds, in one snapshot. */
const DRIFT = `
WITH want AS (${WANT}), have AS (${HAVE})
SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = ${PUB}) AS exists,
  ARRAY(SELECT format('%s.%s', s, t) FROM (SELECT * FROM want EXCEPT SELECT * FROM have) x) AS missing,
  ARRAY(SELECT format('%s.%s', s, t) FROM (SELECT * FROM have EXCEPT SELECT * FROM want) x) AS extra,
  ARRAY(SELECT json_build_array(s, t)::text FROM (SELECT * FROM want EXCEPT SELECT * FROM have) x) AS add,
  ARRAY(SELECT json_build_array(s, t)::text FROM (SELECT * FROM have EXCEPT SELECT * FROM want) x) AS drop`

export interface PublicationRepair {
  /** the publication was gone and is created anew */
  recreated: boolean
  /** replicated tables that were missing from it */
  added: string[]
  /** tables in it that are not replicated (added by hand) */
  removed: string[]
}

interface Drift {
  exists: boolean
  missing: string[]
  extra: string[]
  add: string[]
  drop: string[]
}

/**
 * Make the publication hold exactly the replicaset again, if someone changed it by hand
 * (DROP PUBLICATION, ALTER PUBLICATION). The replicaset is locked against concurrent commits
 * while the difference is taken and repaired. Returns what was repaired (nothing: all empty).
 */
export async function repairPublication(db: Db): Promise<PublicationRepair> {
  const none = { recreated: false, added: [], removed: [] }
  const [quick] = await db.query<Drift & Row>(DRIFT)
  if (!quick || (quick.exists && quick.missing.length === 0 && quick.extra.length === 0))
    return none
  return await db.tx(async (c) => {
    await c.query(`SET LOCAL lock_timeout = 2000`)
    await c.query(`LOCK TABLE trktr.replicaset IN SHARE ROW EXCLUSIVE MODE`)
    const d = (await c.query<Drift & Row>(DRIFT)).rows[0]
    if (!d) return none
    if (!d.exists) await c.query(CREATE_PUBLICATION)
    for (const pair of d.add) {
      const [schema, table] = JSON.parse(pair) as [string, string]
      await addToPublication(c, { schema, table })
    }
    for (const pair of d.drop) {
      const [schema, table] = JSON.parse(pair) as [string, string]
      await removeFromPublication(c, { schema, table })
    }
    return { recreated: !d.exists, added: d.missing, removed: d.extra }
  })
}
