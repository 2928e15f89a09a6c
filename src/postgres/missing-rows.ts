// update_missing and delete_missing (issue 10). PostgreSQL 17's apply worker skips an incoming
// UPDATE or DELETE whose row is not there, with no error, no count and no trigger; it says so
// only at DEBUG1, in an elog line that is never translated:
//   logical replication did not find row to be updated|deleted in replication target relation "t"
// with the apply context (origin "pg_<subscription oid>", message type, "schema.table", remote
// xid, finish LSN). The apply workers run as the subscriptions' owner, the arbiter's role, so
// that role logs DEBUG1 in this database (a role setting, read when a worker starts); the
// resolver reads those lines and each skipped transaction's rows become one ledger entry.
import type { Db } from './db.js'
import { quoteIdent } from './ident.js'
import { parseApplyContext } from './logmessage.js'
import { isApplyWorkerRecord, type LogRecord } from './logparse.js'

export type MissingKind = 'update_missing' | 'delete_missing'

export interface MissingRow {
  kind: MissingKind
  at: string
  /** "schema.table" as the server printed it */
  relation: string
  /** replication origin "pg_<oid>": the subscription, so the peer the change came from */
  origin: string
  finishLsn: string | undefined
  remoteXid: number | undefined
}

const MISSING =
  /^logical replication did not find row to be (updated|deleted) in replication target relation "/

/** A skipped UPDATE/DELETE of a missing row, from an apply worker's own DEBUG line. */
export function parseMissingRow(r: LogRecord): MissingRow | undefined {
  if (r.level !== 'DEBUG' || !isApplyWorkerRecord(r) || r.context === undefined) return undefined
  const m = MISSING.exec(r.message)
  if (!m) return undefined
  const ctx = parseApplyContext(r.context)
  if (!ctx?.relation || !ctx.origin.match(/^pg_\d+$/)) return undefined
  const expected = m[1] === 'updated' ? 'UPDATE' : 'DELETE'
  if (ctx.messageType !== expected) return undefined
  return {
    kind: m[1] === 'updated' ? 'update_missing' : 'delete_missing',
    at: r.timestamp,
    relation: ctx.relation,
    origin: ctx.origin,
    finishLsn: ctx.finishLsn,
    remoteXid: ctx.remoteXid,
  }
}

/** SQLSTATE insufficient_privilege: the role may not set log_min_messages */
const NOT_PERMITTED = '42501'

/**
 * The arbiter's role logs DEBUG1 in this database, so its apply workers report the rows they
 * skip. Returns false when the role may not (a non-superuser without SET on the parameter).
 */
export async function logMissingRows(db: Db): Promise<boolean> {
  const r = await roleSetting(db)
  if (r.ours) return true
  try {
    await db.query(
      `ALTER ROLE CURRENT_USER IN DATABASE ${quoteIdent(r.db)} SET log_min_messages = 'debug1'`,
    )
    return true
  } catch (err) {
    if ((err as { sqlState?: string }).sqlState === NOT_PERMITTED) return false
    throw err
  }
}

/** Back to the server's level (the node leaves traktor), if the level is the one we set. */
export async function stopLoggingMissingRows(db: Db): Promise<void> {
  const r = await roleSetting(db)
  if (!r.ours) return
  await db
    .query(`ALTER ROLE CURRENT_USER IN DATABASE ${quoteIdent(r.db)} RESET log_min_messages`)
    .catch(() => undefined)
}

/** This database's name, and whether the role logs DEBUG1 in it (our setting). */
async function roleSetting(db: Db): Promise<{ db: string; ours: boolean }> {
  const [r] = await db.query<{ db: string; ours: boolean }>(
    `SELECT current_database() AS db, EXISTS (
       SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database() AND s.setrole = current_user::regrole
          AND 'log_min_messages=debug1' = ANY (s.setconfig)) AS ours`,
  )
  return { db: r?.db ?? '', ours: r?.ours ?? false }
}

const ACTION: Record<MissingKind, string> = {
  update_missing: 'skipped: the row is not here',
  delete_missing: 'skipped: the row is already gone here',
}

/**
 * One ledger entry per skipped transaction, relation and kind (its rows counted in `entries`);
 * the key is the transaction's identity, so an entry read twice is kept once. The loser is the
 * peer whose change was skipped. Returns the entries that are new.
 */
export async function recordMissingRows(db: Db, rows: readonly MissingRow[]): Promise<number> {
  const groups = new Map<string, { row: MissingRow; n: number }>()
  for (const row of rows) {
    const k = [row.kind, row.origin, row.finishLsn, row.remoteXid, row.relation].join('\u0000')
    const g = groups.get(k)
    if (g) g.n++
    else groups.set(k, { row, n: 1 })
  }
  let added = 0
  for (const { row, n } of groups.values()) {
    const key = {
      origin: row.origin,
      finish_lsn: row.finishLsn ?? null,
      remote_xid: row.remoteXid ?? null,
    }
    const dot = row.relation.indexOf('.')
    const inserted = await db.query(
      `INSERT INTO trktr.resolutions (at, relation, key, kind, action, entries, loser_node)
       SELECT $1::timestamptz,
              coalesce(to_regclass(format('%I.%I', $2::text, $3::text))::text, $2 || '.' || $3),
              $4::jsonb, $5, $6, $7,
              trktr.origin_node((SELECT roident FROM pg_replication_origin WHERE roname = $8))
        WHERE NOT EXISTS (
          SELECT 1 FROM trktr.resolutions WHERE kind = $5 AND key = $4::jsonb
            AND relation = coalesce(to_regclass(format('%I.%I', $2::text, $3::text))::text,
                                    $2 || '.' || $3))
       RETURNING id`,
      [
        row.at,
        row.relation.slice(0, dot),
        row.relation.slice(dot + 1),
        JSON.stringify(key),
        row.kind,
        ACTION[row.kind],
        n,
        row.origin,
      ],
    )
    added += inserted.length
  }
  return added
}
