// The roster of nodes removed from the cluster (trktr.removed_nodes): when each was removed,
// and re-admitted if it was. Members merge what they know (the newer change wins), so a node
// that missed a removal learns it; cluster-state.ts exports these too.
import { type Db, prepared } from './db.js'

/** One node's entry in the roster: when it was removed, and re-admitted if it was. */
export interface RosterEntry {
  node: number
  removedMs: number
  readmittedMs: number | null
}

const ROSTER = prepared(
  'roster',
  `
SELECT node_id, (extract(epoch FROM removed) * 1000)::float8 AS removed_ms,
       (extract(epoch FROM readmitted) * 1000)::float8 AS readmitted_ms
FROM trktr.removed_nodes ORDER BY node_id`,
)

export async function roster(db: Db): Promise<RosterEntry[]> {
  const rows = await db.query<{
    node_id: number
    removed_ms: number
    readmitted_ms: number | null
  }>(ROSTER)
  return rows.map((r) => ({
    node: r.node_id,
    removedMs: Math.round(r.removed_ms),
    readmittedMs: r.readmitted_ms === null ? null : Math.round(r.readmitted_ms),
  }))
}

/** Removed now: removed and not re-admitted since. */
export function isRemovedEntry(e: RosterEntry): boolean {
  return e.readmittedMs === null || e.readmittedMs < e.removedMs
}

/** The roster's version: its newest change, in ms (0 when empty); gossiped in heartbeats. */
export function rosterVersion(entries: readonly RosterEntry[]): number {
  return entries.reduce((v, e) => Math.max(v, e.removedMs, e.readmittedMs ?? 0), 0)
}

export async function removedNodes(db: Db): Promise<number[]> {
  return (await roster(db)).filter(isRemovedEntry).map((e) => e.node)
}

export async function markRemoved(db: Db, nodeId: number): Promise<void> {
  await db.query(
    `INSERT INTO trktr.removed_nodes (node_id, removed) VALUES ($1, date_trunc('milliseconds', clock_timestamp()))
     ON CONFLICT (node_id) DO UPDATE SET removed = date_trunc('milliseconds', clock_timestamp()), readmitted = NULL
     WHERE trktr.removed_nodes.readmitted IS NOT NULL`,
    [nodeId],
  )
}

export async function markReadmitted(db: Db, nodeId: number): Promise<boolean> {
  const rows = await db.query(
    `UPDATE trktr.removed_nodes SET readmitted = date_trunc('milliseconds', clock_timestamp())
     WHERE node_id = $1 AND readmitted IS NULL RETURNING node_id`,
    [nodeId],
  )
  return rows.length > 0
}

/**
 * Merge what a member knows into the local roster: per node, the entry with the newer change
 * wins. Returns the nodes whose entry changed here.
 */
export async function mergeRoster(db: Db, entries: readonly RosterEntry[]): Promise<number[]> {
  if (entries.length === 0) return []
  const rows = await db.query<{ node_id: number }>(
    `INSERT INTO trktr.removed_nodes AS r (node_id, removed, readmitted)
     SELECT e.node, to_timestamp(e.removed_ms / 1000.0), to_timestamp(e.readmitted_ms / 1000.0)
     FROM unnest($1::int[], $2::float8[], $3::float8[]) AS e(node, removed_ms, readmitted_ms)
     ON CONFLICT (node_id) DO UPDATE SET removed = EXCLUDED.removed, readmitted = EXCLUDED.readmitted
     WHERE greatest(EXCLUDED.removed, EXCLUDED.readmitted) > greatest(r.removed, r.readmitted)
     RETURNING node_id`,
    [
      entries.map((e) => e.node),
      entries.map((e) => e.removedMs),
      entries.map((e) => e.readmittedMs),
    ],
  )
  return rows.map((r) => r.node_id)
}
