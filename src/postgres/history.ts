// trktr.history: every failed remote transaction the resolver saw, what it did about it,
// and when it was really resolved (not merely attempted). The ledger lists the consistency
// check's repairs (trktr.repairs) beside them, as kind "repair".
import type { Db } from './db.js'
import type { Resolution } from './lww.js'
import { listRepairs, type RepairEntry } from './repair-store.js'

export interface HistoryEntry {
  subscription: string | null
  lsn: string
  occurred: string
  relation: string | null
  key: string | null
  value: string | null
  sqlStateCode: string | null
  reason: string | null
  /**
   * 'conflict' | 'error' (a failed remote transaction), a row-level kind (lww.ts), or 'repair'
   * (the consistency check set the row to the winning version)
   */
  kind: string
  /** 'skip' | 'none' for failed transactions; 'lww' for a row-level resolution; 'repair' */
  action: string | null
  attempts: number
  resolved: string | null
  /** row-level resolutions: both versions, and what the node did */
  winner?: { node: number | null; ts: string | null; image: unknown }
  loser?: { node: number | null; ts: string | null; image: unknown }
  resolution?: string
}

export interface NewIssue {
  subscription: string
  lsn: string
  occurred?: Date
  relation?: string
  key?: string
  value?: string
  sqlStateCode: string
  reason?: string
  kind: 'conflict' | 'error'
  action: 'skip' | 'none'
}

/** Record an issue once; a repeat of the same (subscription, lsn) counts another attempt. */
export async function recordIssue(db: Db, i: NewIssue): Promise<{ attempts: number }> {
  const rows = await db.query<{ attempts: number }>(
    `INSERT INTO trktr.history
       (subscription, lsn, occurred, relation, key, value, sql_state_code, reason, kind, action,
        attempts)
     VALUES ($1, $2::pg_lsn, COALESCE($3, now()), $4, $5, $6, $7, $8, $9, $10, 1)
     ON CONFLICT (subscription, lsn) DO UPDATE SET attempts = trktr.history.attempts + 1
     RETURNING attempts`,
    [
      i.subscription,
      i.lsn,
      i.occurred ?? null,
      i.relation ?? null,
      i.key ?? null,
      i.value ?? null,
      i.sqlStateCode,
      i.reason ?? null,
      i.kind,
      i.action,
    ],
  )
  return { attempts: rows[0]?.attempts ?? 1 }
}

/**
 * Mark unresolved issues resolved where the subscription is enabled again and its origin has
 * applied past the failing transaction: the skip (or the operator's fix) really happened.
 */
export async function markApplied(db: Db): Promise<HistoryEntry[]> {
  const rows = await db.query<Record<string, unknown>>(
    `UPDATE trktr.history h SET resolved = now()
     FROM pg_subscription s
     WHERE h.resolved IS NULL AND s.subname = h.subscription AND s.subenabled
       AND s.subskiplsn = '0/0'::pg_lsn
       AND pg_replication_origin_progress('pg_' || s.oid, false) >= h.lsn
     RETURNING h.*`,
  )
  return rows.map(toEntry)
}

/** Failed remote transactions and repairs, newest first. */
export async function listHistory(db: Db, limit = 1000): Promise<HistoryEntry[]> {
  const rows = await db.query<Record<string, unknown>>(
    `SELECT * FROM trktr.history ORDER BY occurred DESC, subscription LIMIT $1`,
    [limit],
  )
  const repairs = (await listRepairs(db, limit)).map(repairEntry)
  const heals = (await listHeals(db, limit)).map(healEntry)
  return [...rows.map(toEntry), ...repairs, ...heals]
    .sort((a, b) => (a.occurred < b.occurred ? 1 : a.occurred > b.occurred ? -1 : 0))
    .slice(0, limit)
}

/**
 * A repair as a ledger row, in the row-level resolutions' shape: no subscription and no error,
 * resolved when it happened, the winning version (its node, commit time and row) as the winner
 * and what the repair did (insert, update, delete) as the resolution.
 */
function repairEntry(r: RepairEntry): HistoryEntry {
  const what = r.action === 'delete' ? 'deleted' : r.action === 'insert' ? 'inserted' : 'updated'
  return {
    subscription: null,
    lsn: r.lsn,
    occurred: r.occurred,
    relation: r.relation,
    key: r.key,
    value: null,
    sqlStateCode: null,
    reason: `repair: ${what} to node ${r.winner}'s version (${r.rule})`,
    kind: 'repair',
    action: 'repair',
    attempts: 1,
    resolved: r.occurred,
    winner: { node: r.winner, ts: r.winnerTs, image: parseImage(r.image) },
    resolution: r.action,
  }
}

export interface HealEntry {
  occurred: string
  slot: string
  peer: number
  lsn: string
}

/** Record that a peer was asked to copy the data again because its slot here was lost. */
export async function recordHeal(db: Db, h: { slot: string; peer: number }): Promise<void> {
  await db.query(
    `INSERT INTO trktr.heals (slot, peer, lsn) VALUES ($1, $2, pg_current_wal_insert_lsn())`,
    [h.slot, h.peer],
  )
}

async function listHeals(db: Db, limit: number): Promise<HealEntry[]> {
  const rows = await db.query<{ occurred: Date; slot: string; peer: number; lsn: string }>(
    `SELECT occurred, slot, peer, lsn::text AS lsn FROM trktr.heals ORDER BY occurred DESC LIMIT $1`,
    [limit],
  )
  return rows.map((r) => ({ ...r, occurred: r.occurred.toISOString() }))
}

/** A heal as a ledger row: the lost slot, and the peer that copied the data again. */
function healEntry(h: HealEntry): HistoryEntry {
  return {
    subscription: h.slot,
    lsn: h.lsn,
    occurred: h.occurred,
    relation: null,
    key: null,
    value: null,
    sqlStateCode: null,
    reason: `replication slot ${h.slot} was lost here: node ${h.peer} copied the cluster's data again`,
    kind: 'heal',
    action: 'resync',
    attempts: 1,
    resolved: h.occurred,
  }
}

/** The stored row_to_json text as JSON (null: the row was deleted). */
function parseImage(image: string | null): unknown {
  if (image === null) return null
  try {
    return JSON.parse(image)
  } catch {
    return image
  }
}

export interface HistoryCounts {
  resolved: number
  pending: number
  tainted: boolean
}

export async function historyCounts(db: Db): Promise<HistoryCounts> {
  const [r] = await db.query<{ resolved: string; pending: string; tainted: boolean }>(
    `SELECT count(*) FILTER (WHERE resolved IS NOT NULL) AS resolved,
            count(*) FILTER (WHERE resolved IS NULL) AS pending,
            COALESCE(bool_or(action = 'skip' AND resolved IS NOT NULL), false) AS tainted
     FROM trktr.history`,
  )
  return {
    resolved: Number(r?.resolved ?? 0),
    pending: Number(r?.pending ?? 0),
    tainted: r?.tainted ?? false,
  }
}

function iso(v: unknown): string | null {
  return v instanceof Date ? v.toISOString() : v == null ? null : String(v)
}

function toEntry(r: Record<string, unknown>): HistoryEntry {
  return {
    subscription: String(r.subscription),
    lsn: String(r.lsn),
    occurred: iso(r.occurred) ?? '',
    relation: (r.relation as string | null) ?? null,
    key: (r.key as string | null) ?? null,
    value: (r.value as string | null) ?? null,
    sqlStateCode: String(r.sql_state_code),
    reason: (r.reason as string | null) ?? null,
    kind: String(r.kind),
    action: (r.action as string | null) ?? null,
    attempts: Number(r.attempts ?? 0),
    resolved: iso(r.resolved),
  }
}

/** Failed remote transactions and (given) the row-level resolutions, newest first. */
export async function listWithResolutions(
  db: Db,
  resolutions?: () => Promise<Resolution[]>,
): Promise<HistoryEntry[]> {
  const failed = await listHistory(db)
  if (!resolutions) return failed
  const rows = (await resolutions()).map(resolutionEntry)
  return [...failed, ...rows].sort((a, b) => (a.occurred < b.occurred ? 1 : -1))
}

/** A row-level resolution in the shape of a history row (TRAKTOR's fields first). */
export function resolutionEntry(r: Resolution): HistoryEntry {
  const who = (v: { node: number | null; ts: string | null }) =>
    `node ${v.node ?? '?'} (${v.ts ?? 'no commit timestamp'})`
  const verb =
    r.action === 'delete wins' ? 'the delete of' : r.action === 'restored' ? 'restored' : 'kept'
  // update_missing/delete_missing (missing-rows.ts): the key is the skipped transaction's
  const skipped = /_missing$/.test(r.kind) ? (r.key as { finish_lsn?: string | null }) : undefined
  const reason = skipped
    ? `${r.kind}: ${r.entries} row${r.entries === 1 ? '' : 's'} of node ${r.loser.node ?? '?'}'s transaction finished at ${skipped.finish_lsn ?? '?'} ${r.action}`
    : `${r.kind}: ${verb} the version of ${who(r.winner)} over ${who(r.loser)}`
  return {
    subscription: null,
    lsn: skipped?.finish_lsn ?? '0/0',
    occurred: r.at,
    relation: r.relation,
    key: JSON.stringify(r.key),
    value: null,
    sqlStateCode: /insert_exists|update_exists/.test(r.kind) ? '23505' : null,
    reason,
    kind: r.kind,
    action: 'lww',
    attempts: r.entries,
    resolved: r.at,
    winner: r.winner,
    loser: r.loser,
    resolution: r.action,
  }
}
