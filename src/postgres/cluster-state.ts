// Mesh mode's durable state in trktr: the agreed replicaset version, proposals with their
// decision (set once: the first decision wins, which fences out a late COMMIT after an ABORT),
// and the nodes removed from the cluster (removed-nodes.ts).
import { applyTableChange } from './apply-proposal.js'
import { type Db, prepared, type Queryable } from './db.js'
import { commitDdl, type DdlSpec, ddlGid } from './ddl.js'
import { formatRelation, type RelationName } from './ident.js'
import {
  addToPublication,
  problemsOf,
  removeFromPublication,
  type TableInfoRow,
  tableInfoJson,
} from './replicaset.js'

// the commit mode's row lives beside the version, in trktr.cluster
export { type CommitSetting, commitSetting, storeCommitSetting } from './commit-setting.js'
// the roster of removed nodes, in trktr.removed_nodes
export {
  isRemovedEntry,
  markReadmitted,
  markRemoved,
  mergeRoster,
  type RosterEntry,
  removedNodes,
  roster,
  rosterVersion,
} from './removed-nodes.js'

export interface Proposal {
  id: string
  version: number
  /** add or remove a table, or a schema change (ddl; schema.table: the first table it names) */
  op: 'add' | 'remove' | 'ddl'
  schema: string
  table: string
  columns: string[]
  coordinator: number
  ddl?: DdlSpec
  /** a table joining with rows on some nodes: the node every empty one copies (copy-plan.ts) */
  copy?: { node: number; rows: number | null; hash: string }
}

export interface ProposalRow extends Proposal {
  decision: 'commit' | 'abort' | null
  applied: boolean
  createdMs: number
}

const VERSION = prepared('version', `SELECT replicaset_version AS v FROM trktr.cluster`)

export async function replicasetVersion(db: Db): Promise<number> {
  const [r] = await db.query<{ v: number }>(VERSION)
  return r?.v ?? 0
}

const VERSION_BASE = `greatest((SELECT replicaset_version FROM trktr.cluster),
  (SELECT max(version) FROM trktr.proposals WHERE decision = 'commit'))`

/**
 * The version the next proposal builds on: the applied version, or a later one already decided
 * COMMIT (its steps may still be running, or failing): a version number is never used twice.
 */
export async function versionBase(db: Db): Promise<number> {
  const [r] = await db.query<{ v: number }>(`SELECT ${VERSION_BASE} AS v`)
  return r?.v ?? 0
}

/**
 * What a coordinator reads before it proposes a table change, in one query: versionBase(), and
 * whether the table is in the committed replicaset (and exists: as replicasetSnapshot lists it).
 */
export async function proposalBase(
  db: Db,
  rel: RelationName,
): Promise<{ version: number; present: boolean }> {
  const [r] = await db.query<{ v: number | null; present: boolean }>(
    `SELECT ${VERSION_BASE} AS v,
       EXISTS (SELECT 1 FROM trktr.replicaset r JOIN pg_namespace n ON n.nspname = r.schema_name
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
               WHERE r.status = 'committed' AND r.schema_name = $1 AND r.table_name = $2) AS present`,
    [rel.schema, rel.table],
  )
  return { version: r?.v ?? 0, present: r?.present === true }
}

const RECORD = `
INSERT INTO trktr.proposals (id, version, op, schema_name, table_name, columns, coordinator, ddl, copy)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`
const recordParams = (p: Proposal) => [
  p.id,
  p.version,
  p.op,
  p.schema,
  p.table,
  p.columns,
  p.coordinator,
  p.ddl ? JSON.stringify(p.ddl) : null,
  p.copy ? JSON.stringify(p.copy) : null,
]

/** Record a proposal as prepared (idempotent for the same id). */
export async function recordProposal(db: Db, p: Proposal): Promise<void> {
  await db.query(RECORD, recordParams(p))
}

/** recordProposal inside the caller's transaction (a prepare that commits with its fence). */
export async function recordProposalIn(c: Queryable, p: Proposal): Promise<void> {
  await c.query(RECORD, recordParams(p))
}

export interface PrepareFacts {
  /** this proposal's decision here, if it is recorded here ('none': recorded, undecided) */
  known: 'commit' | 'abort' | 'none' | undefined
  /** versionBase() */
  base: number
  /** the oldest other undecided proposal */
  open: { id: string; version: number } | undefined
  /** max_prepared_transactions (a schema change prepares its statement) */
  maxPrepared: number
  /** why the table asked about cannot join the replicaset here (replicaset.ts problemsOf) */
  problems: string[]
}

const PREPARE_FACTS = `
SELECT (SELECT COALESCE(decision, 'none') FROM trktr.proposals WHERE id = $1) AS known,
       ${VERSION_BASE} AS base,
       (SELECT json_build_object('id', id, 'version', version) FROM trktr.proposals
         WHERE decision IS NULL AND id <> $1 ORDER BY created LIMIT 1) AS open,
       current_setting('max_prepared_transactions')::int AS max_prepared,
       current_user AS role,
       CASE WHEN $2::text IS NOT NULL THEN ${tableInfoJson('$2', '$3')} END AS info`

/**
 * What a member checks before it prepares a proposal, in one round trip: and of `table`, if
 * given, whether it can join the replicaset here with the coordinator's columns.
 */
export async function prepareFacts(
  db: Db,
  id: string,
  table?: { rel: RelationName; columns: readonly string[]; from: number },
): Promise<PrepareFacts> {
  const [r] = await db.query<{
    known: string | null
    base: number | null
    open: { id: string; version: number } | null
    max_prepared: number
    role: string
    info: TableInfoRow | null
  }>(PREPARE_FACTS, [id, table?.rel.schema ?? null, table?.rel.table ?? null])
  return {
    known: (r?.known ?? undefined) as PrepareFacts['known'],
    base: r?.base ?? 0,
    open: r?.open ?? undefined,
    maxPrepared: r?.max_prepared ?? 0,
    problems: table && r ? problemsOf(table.rel, r.info, r.role, table) : [],
  }
}

/** Undecided proposals other than `except`: a member holds at most one at a time. */
export async function openProposals(db: Db, except?: string): Promise<ProposalRow[]> {
  const rows = await db.query(
    `SELECT * FROM trktr.proposals WHERE decision IS NULL AND id IS DISTINCT FROM $1 ORDER BY created`,
    [except ?? null],
  )
  return rows.map(toRow)
}

/** Proposals this node coordinated, decided COMMIT, whose steps did not finish everywhere. */
export async function incompleteCommits(db: Db, coordinator: number): Promise<ProposalRow[]> {
  const rows = await db.query(
    `SELECT * FROM trktr.proposals
     WHERE decision = 'commit' AND NOT completed AND coordinator = $1 ORDER BY version`,
    [coordinator],
  )
  return rows.map(toRow)
}

/**
 * Whether the recovery pass has anything to look at: an undecided proposal, a decided COMMIT
 * this node coordinated and has not finished or (a schema change) not committed here, or a
 * schema change's transaction still prepared here. One query, so an idle node's pass is one.
 */
const RECOVERY_DUE = prepared(
  'recovery_due',
  `SELECT EXISTS (SELECT 1 FROM trktr.proposals
                   WHERE decision IS NULL
                      OR (decision = 'commit' AND NOT completed AND coordinator = $1)
                      OR (decision = 'commit' AND NOT applied AND op = 'ddl'))
       OR EXISTS (SELECT 1 FROM pg_prepared_xacts x
                   WHERE x.database = current_database() AND starts_with(x.gid, $2)) AS due`,
)

export async function recoveryDue(db: Db, coordinator: number): Promise<boolean> {
  const [r] = await db.query<{ due: boolean }>(RECOVERY_DUE, [coordinator, ddlGid('')])
  return r?.due === true
}

/** Schema changes decided COMMIT whose prepared statement this node has not committed yet. */
export async function unappliedSchemaCommits(db: Db): Promise<ProposalRow[]> {
  const rows = await db.query(
    `SELECT * FROM trktr.proposals WHERE decision = 'commit' AND NOT applied AND op = 'ddl' ORDER BY version`,
  )
  return rows.map(toRow)
}

export async function markCompleted(db: Db, id: string): Promise<void> {
  await db.query(`UPDATE trktr.proposals SET completed = true WHERE id = $1`, [id])
}

export async function getProposal(db: Db, id: string): Promise<ProposalRow | undefined> {
  const [r] = await db.query(`SELECT * FROM trktr.proposals WHERE id = $1`, [id])
  return r ? toRow(r) : undefined
}

/**
 * Set the decision unless one is set already; returns the decision that holds. A proposal
 * this node never saw gets a row with the decision (an ABORT recorded before answering).
 */
export async function decide(
  db: Db,
  id: string,
  decision: 'commit' | 'abort',
  p?: Proposal,
): Promise<'commit' | 'abort'> {
  if (p) await recordProposal(db, p)
  // the copy plan is known once every node voted: it is decided with the commit
  const rows = await db.query<{ decision: 'commit' | 'abort' }>(
    `UPDATE trktr.proposals SET decision = COALESCE(decision, $2),
       decided = COALESCE(decided, now()), copy = COALESCE(copy, $3::jsonb)
     WHERE id = $1 RETURNING decision`,
    [id, decision, p?.copy ? JSON.stringify(p.copy) : null],
  )
  return rows[0]?.decision ?? decision
}

/**
 * Apply a committed proposal to the publication and the replicaset, and move the version,
 * in one transaction. Idempotent: applying twice changes nothing.
 */
export async function applyProposal(db: Db, p: Proposal): Promise<void> {
  // a schema change commits its prepared transaction (its replicaset rows changed inside it)
  if (p.op === 'ddl') return await commitDdl(db, p.id, p.version)
  await applyTableChange(db, { ...p, op: p.op }, false)
}

/**
 * A table change's publish step on this node: the proposal recorded and decided COMMIT (unless
 * decided already: the coordinator's decision row is the commit point), the table added to or
 * removed from the publication and the replicaset, the version moved: one transaction, one
 * round trip. Idempotent: applying twice changes nothing.
 */
export async function publishProposal(db: Db, p: Proposal): Promise<void> {
  if (p.op === 'ddl') throw new Error('publishProposal: a schema change commits with commitDdl')
  await applyTableChange(db, { ...p, op: p.op }, true)
}

/** A table added to or removed from the publication and the replicaset (adoptSnapshot). */
async function applyChange(c: Queryable, op: 'add' | 'remove', rel: RelationName): Promise<void> {
  if (op === 'add') {
    await addToPublication(c, rel)
    await c.query(
      `INSERT INTO trktr.replicaset (schema_name, table_name, status, committed)
       VALUES ($1, $2, 'committed', now())
       ON CONFLICT (schema_name, table_name) DO UPDATE SET status = 'committed', committed = now()`,
      [rel.schema, rel.table],
    )
  } else {
    await removeFromPublication(c, rel)
    await c.query(`DELETE FROM trktr.replicaset WHERE schema_name = $1 AND table_name = $2`, [
      rel.schema,
      rel.table,
    ])
  }
}

export interface ReplicasetSnapshot {
  version: number
  tables: Array<{ relation: string; schema: string; table: string; columns: string[] }>
}

const SNAPSHOT = prepared(
  'replicaset_snapshot',
  `SELECT r.schema_name, r.table_name,
          ARRAY(SELECT a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                  AND NOT a.attisdropped ORDER BY a.attnum) AS columns
   FROM trktr.replicaset r
   JOIN pg_namespace n ON n.nspname = r.schema_name
   JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
   WHERE r.status = 'committed' ORDER BY 1, 2`,
)

/** The committed replicaset with column signatures, for a joining node to adopt. */
export async function replicasetSnapshot(db: Db): Promise<ReplicasetSnapshot> {
  const version = await replicasetVersion(db)
  const rows = await db.query<{ schema_name: string; table_name: string; columns: string[] }>(
    SNAPSHOT,
  )
  return {
    version,
    tables: rows.map((r) => ({
      relation: formatRelation({ schema: r.schema_name, table: r.table_name }),
      schema: r.schema_name,
      table: r.table_name,
      columns: r.columns,
    })),
  }
}

/** Make the local replicaset equal to a snapshot (join or catch-up), in one transaction. */
export async function adoptSnapshot(
  db: Db,
  snap: ReplicasetSnapshot,
): Promise<{ added: string[]; removed: string[] }> {
  return await db.tx(async (c) => {
    const current = (
      await c.query<{ schema_name: string; table_name: string }>(
        `SELECT schema_name, table_name FROM trktr.replicaset WHERE status = 'committed'`,
      )
    ).rows
    const want = new Set(snap.tables.map((t) => `${t.schema}\u0000${t.table}`))
    const have = new Set(current.map((t) => `${t.schema_name}\u0000${t.table_name}`))
    const added: string[] = []
    const removed: string[] = []
    for (const t of snap.tables) {
      if (have.has(`${t.schema}\u0000${t.table}`)) continue
      await applyChange(c, 'add', t)
      added.push(t.relation)
    }
    for (const t of current) {
      if (want.has(`${t.schema_name}\u0000${t.table_name}`)) continue
      const rel = { schema: t.schema_name, table: t.table_name }
      await applyChange(c, 'remove', rel)
      removed.push(formatRelation(rel))
    }
    await c.query(`UPDATE trktr.cluster SET replicaset_version = $1`, [snap.version])
    return { added, removed }
  })
}

function toRow(r: Record<string, unknown>): ProposalRow {
  return {
    id: String(r.id),
    version: Number(r.version),
    op: r.op as Proposal['op'],
    schema: String(r.schema_name),
    table: String(r.table_name),
    columns: r.columns as string[],
    coordinator: Number(r.coordinator),
    ...(r.ddl ? { ddl: r.ddl as DdlSpec } : {}),
    ...(r.copy ? { copy: r.copy as NonNullable<Proposal['copy']> } : {}),
    decision: (r.decision as 'commit' | 'abort' | null) ?? null,
    applied: Boolean(r.applied),
    createdMs: r.created instanceof Date ? r.created.getTime() : Date.now(),
  }
}
