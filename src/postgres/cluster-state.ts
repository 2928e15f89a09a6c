// Mesh mode's durable state in trktr: the agreed replicaset version, proposals with their
// decision (set once: the first decision wins, which fences out a late COMMIT after an ABORT),
// and the nodes removed from the cluster.
import type { Db, Queryable } from './db.js'
import { formatRelation, type RelationName } from './ident.js'
import { addToPublication, removeFromPublication } from './replicaset.js'

export interface Proposal {
  id: string
  version: number
  op: 'add' | 'remove'
  schema: string
  table: string
  columns: string[]
  coordinator: number
}

export interface ProposalRow extends Proposal {
  decision: 'commit' | 'abort' | null
  applied: boolean
  createdMs: number
}

export async function replicasetVersion(db: Db): Promise<number> {
  const [r] = await db.query<{ v: number }>(`SELECT replicaset_version AS v FROM trktr.cluster`)
  return r?.v ?? 0
}

/** Record a proposal as prepared (idempotent for the same id). */
export async function recordProposal(db: Db, p: Proposal): Promise<void> {
  await db.query(
    `INSERT INTO trktr.proposals (id, version, op, schema_name, table_name, columns, coordinator)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
    [p.id, p.version, p.op, p.schema, p.table, p.columns, p.coordinator],
  )
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
  const rows = await db.query<{ decision: 'commit' | 'abort' }>(
    `UPDATE trktr.proposals SET decision = COALESCE(decision, $2),
       decided = COALESCE(decided, now()) WHERE id = $1 RETURNING decision`,
    [id, decision],
  )
  return rows[0]?.decision ?? decision
}

/**
 * Apply a committed proposal to the publication and the replicaset, and move the version,
 * in one transaction. Idempotent: applying twice changes nothing.
 */
export async function applyProposal(db: Db, p: Proposal): Promise<void> {
  await db.tx(async (c) => {
    const done = await c.query(`SELECT applied FROM trktr.proposals WHERE id = $1 FOR UPDATE`, [
      p.id,
    ])
    if (done.rows[0]?.applied) return
    await applyChange(c, p.op, { schema: p.schema, table: p.table })
    await c.query(
      `UPDATE trktr.cluster SET replicaset_version = greatest(replicaset_version, $1)`,
      [p.version],
    )
    await c.query(`UPDATE trktr.proposals SET applied = true WHERE id = $1`, [p.id])
  })
}

export async function applyChange(
  c: Queryable,
  op: 'add' | 'remove',
  rel: RelationName,
): Promise<void> {
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

/** The committed replicaset with column signatures, for a joining node to adopt. */
export async function replicasetSnapshot(db: Db): Promise<ReplicasetSnapshot> {
  const version = await replicasetVersion(db)
  const rows = await db.query<{ schema_name: string; table_name: string; columns: string[] }>(
    `SELECT r.schema_name, r.table_name,
            ARRAY(SELECT a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                    AND NOT a.attisdropped ORDER BY a.attnum) AS columns
     FROM trktr.replicaset r
     JOIN pg_namespace n ON n.nspname = r.schema_name
     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
     WHERE r.status = 'committed' ORDER BY 1, 2`,
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

export async function removedNodes(db: Db): Promise<number[]> {
  const rows = await db.query<{ node_id: number }>(`SELECT node_id FROM trktr.removed_nodes`)
  return rows.map((r) => r.node_id)
}

export async function markRemoved(db: Db, nodeId: number): Promise<void> {
  await db.query(`INSERT INTO trktr.removed_nodes (node_id) VALUES ($1) ON CONFLICT DO NOTHING`, [
    nodeId,
  ])
}

function toRow(r: Record<string, unknown>): ProposalRow {
  return {
    id: String(r.id),
    version: Number(r.version),
    op: r.op as 'add' | 'remove',
    schema: String(r.schema_name),
    table: String(r.table_name),
    columns: r.columns as string[],
    coordinator: Number(r.coordinator),
    decision: (r.decision as 'commit' | 'abort' | null) ?? null,
    applied: Boolean(r.applied),
    createdMs: r.created instanceof Date ? r.created.getTime() : Date.now(),
  }
}
