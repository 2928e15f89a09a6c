// The replicaset: the tables in this node's publication. TRAKTOR's meanings: a PUT stages
// 'pending-add', a DELETE stages 'pending-remove', and a commit applies every staged change
// to the publication in one transaction (TRAKTOR's own commit was a no-op: a label mismatch).
import { ConflictError } from '../errors.js'
import type { Db, Queryable } from './db.js'
import { formatRelation, qualified, quoteIdent, type RelationName } from './ident.js'
import { PUBLICATION } from './schema.js'

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
  /** "name:type" per column, in column order */
  columns: string[]
}

const TABLE_INFO = `
SELECT c.oid::int8 AS oid, pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(current_user, c.relowner, 'USAGE') AS owned,
       c.relkind::text AS kind,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS pk,
       ARRAY(SELECT a.attname || ':' || format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`

export async function tableInfo(db: Db, rel: RelationName): Promise<TableInfo | undefined> {
  const rows = (await db.query(TABLE_INFO, [rel.schema, rel.table])) as Array<{
    owner: string
    owned: boolean
    kind: string
    pk: boolean
    columns: string[]
  }>
  const r = rows[0]
  if (!r) return undefined
  if (r.kind !== 'r' && r.kind !== 'p') {
    throw new ConflictError(`${formatRelation(rel)} is not a table`, 'ERR_NOT_A_TABLE')
  }
  return {
    relation: formatRelation(rel),
    owner: r.owner,
    ownedByUs: r.owned,
    hasPrimaryKey: r.pk,
    columns: r.columns,
  }
}

/** The reasons a table cannot join the replicaset here, or [] if it can. */
export function refusals(rel: RelationName, info: TableInfo | undefined, role: string): string[] {
  const name = formatRelation(rel)
  if (!info) return [`table ${name} does not exist`]
  const out: string[] = []
  if (!info.ownedByUs)
    out.push(`table ${name} is owned by ${info.owner}, not by the arbiter role ${role}`)
  if (!info.hasPrimaryKey) out.push(`table ${name} has no primary key`)
  return out
}

/** Stage a table for addition. Already committed or pending-add: nothing to do. */
export async function stageAdd(db: Db, rel: RelationName): Promise<ReplicasetStatus> {
  const [role] = await db.query<{ role: string }>(`SELECT current_user AS role`)
  const reasons = refusals(rel, await tableInfo(db, rel), role?.role ?? '?')
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

/** Tell the arbiters that subscribe to this node that the publication changed. */
export async function notifyPublicationChanged(db: Db): Promise<void> {
  await db.query(`SELECT pg_notify('trktr_publication', $1)`, [String(Date.now())])
}
