// The repair's writes on one node: each differing row set to the winning version, in a session
// tagged with the winner's replication origin trktr_lww_<node> — the origin the row-level
// resolver (lww.ts) restores a version under — so that the change is not published to the
// peers' origin = none subscriptions (each node repairs its own rows; nothing loops), and the
// repaired row has the same (commit time, node) on every node: trktr.origin_node maps the
// origin to the winning node, and each transaction carries the winner's commit time
// (pg_replication_origin_xact_setup). A repaired row is as old as the version it copies, a
// later write still wins over it, and the resolver compares it the same way everywhere. Every
// write is a compare-and-set on the version the check saw, so a row written by a user since
// the check is left alone (and counted as changed). The repaired keys go to trktr.repairs, the
// ledger that /v1/cluster/history shows with kind "repair".
import { ConflictError, TraktorError } from '../errors.js'
import { type TableLayout, tableSql } from './check-store.js'
import type { Db, Queryable } from './db.js'
import { quoteIdent } from './ident.js'
import { lwwOrigin } from './lww.js'

export interface RepairItem {
  /** the key, JSON object text */
  k: string
  /** the row's hash as the check saw it here; null: the row was absent here */
  expect: string | null
  /** the winning row (row_to_json text); null: the winner has no such row (delete) */
  image: string | null
  /** the winner's commit time, µs since 1970 (text), if known */
  ts: string | null
  /**
   * the node the winning version is credited to: the node that wrote it (its origin), else the
   * node holding it; the row is written under its origin trktr_lww_<winner>
   */
  winner: number
  /** why this version won, where it is not the repair's rule (RepairMeta.rule) */
  rule?: string
}

export type RepairOutcome = 'repaired' | 'unchanged' | 'changed' | 'failed'

export interface RepairResult {
  k: string
  outcome: RepairOutcome
  action: 'insert' | 'update' | 'delete' | 'none'
  error?: string
}

export interface RepairMeta {
  checkId: string
  coordinator: number
  /** why this version won, for the ledger (e.g. "last writer", "from node 2") */
  rule: string
}

const ORIGIN_EXISTS = `SELECT 1 FROM pg_replication_origin WHERE roname = $1`

/** Create a replication origin if it is missing (initialisation granted the function). */
export async function ensureOrigin(c: Queryable, name: string): Promise<void> {
  if (((await c.query(ORIGIN_EXISTS, [name])).rowCount ?? 0) > 0) return
  try {
    await c.query(`SELECT pg_replication_origin_create($1)`, [name])
  } catch (err) {
    const state = (err as { code?: string }).code
    if (state === '42710' || state === '23505') return // created meanwhile
    if (state === '42501') {
      throw new ConflictError(
        `the arbiter role may not create the replication origin ${name}: GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_create(text) to the arbiter role (initialisation as superuser does)`,
        'ERR_GRANTS_MISSING',
        '42501',
      )
    }
    throw err
  }
}

interface RepairSql {
  insert: string
  update: string | undefined
  delete: string
}

function repairSql(l: TableLayout): RepairSql {
  const s = tableSql(l)
  const writable = l.columns.filter((c) => !c.generated)
  const names = writable.map((c) => quoteIdent(c.name)).join(', ')
  const from = `json_populate_record(NULL::${s.table}, $1::json) r`
  // identity ALWAYS columns can be set by INSERT ... OVERRIDING SYSTEM VALUE, never by UPDATE
  const settable = writable.filter((c) => c.keyPos === null && !c.identityAlways)
  const set =
    settable.length === 0
      ? undefined
      : `UPDATE ${s.table} AS t SET (${settable.map((c) => quoteIdent(c.name)).join(', ')}) =
           ROW(${settable.map((c) => `r.${quoteIdent(c.name)}`).join(', ')})
         FROM ${from} WHERE ${s.keyMatch('r')} AND ${s.rowHash} = $2`
  return {
    insert: `INSERT INTO ${s.table} AS t (${names}) OVERRIDING SYSTEM VALUE
             SELECT ${writable.map((c) => `r.${quoteIdent(c.name)}`).join(', ')} FROM ${from}
             ON CONFLICT (${l.key.map((c) => quoteIdent(c.name)).join(', ')}) DO NOTHING`,
    update: set,
    delete: `DELETE FROM ${s.table} AS t USING jsonb_to_record($1::jsonb) AS w(${s.keyDefs})
             WHERE ${s.keyMatch('w')} AND ${s.rowHash} = $2`,
  }
}

const LEDGER = `
INSERT INTO trktr.repairs (relation, key, action, winner, winner_ts, previous, image, rule,
                           check_id, coordinator, lsn)
VALUES ($1, $2, $3, $4,
        CASE WHEN $5::int8 IS NULL THEN NULL
             ELSE 'epoch'::timestamptz + $5::int8 * interval '1 microsecond' END,
        $6, $7, $8, $9, $10, pg_current_wal_insert_lsn())`

/**
 * Apply the items in one session: one transaction per winner and commit time (a session has one
 * origin at a time, a transaction one commit time), tagged with the winner's origin; one
 * savepoint per key (one failing key — a foreign key, another unique constraint — fails alone).
 */
export async function applyRepairs(
  db: Db,
  l: TableLayout,
  items: RepairItem[],
  meta: RepairMeta,
  timeoutMs: number,
): Promise<RepairResult[]> {
  const sql = repairSql(l)
  const groups = new Map<string, { winner: number; ts: string; items: RepairItem[] }>()
  for (const it of items) {
    const g = `${it.winner}/${it.ts ?? ''}`
    const group = groups.get(g) ?? { winner: it.winner, ts: it.ts ?? '', items: [] }
    group.items.push(it)
    groups.set(g, group)
  }
  const results: RepairResult[] = []
  await db.session(async (c) => {
    for (const { winner, ts, items: group } of groups.values()) {
      const origin = lwwOrigin(winner)
      await ensureOrigin(c, origin)
      await c.query(`SELECT pg_replication_origin_session_setup($1)`, [origin])
      try {
        results.push(...(await repairGroup(c, l, sql, group, ts, meta, timeoutMs)))
      } finally {
        await c.query(`SELECT pg_replication_origin_session_reset()`).catch(() => undefined)
      }
    }
  })
  return results
}

async function repairGroup(
  c: Queryable,
  l: TableLayout,
  sql: RepairSql,
  group: RepairItem[],
  ts: string,
  meta: RepairMeta,
  timeoutMs: number,
): Promise<RepairResult[]> {
  const out: RepairResult[] = []
  await c.query('BEGIN')
  try {
    await c.query(
      `SELECT set_config('TimeZone', 'UTC', true), set_config('IntervalStyle', 'postgres', true),
              set_config('lc_monetary', 'C', true), set_config('statement_timeout', $1::text, true)`,
      [String(Math.max(1, Math.round(timeoutMs)))],
    )
    // the repaired rows carry the winner's commit time (a fresh one when it is unknown)
    await c.query(
      `SELECT pg_replication_origin_xact_setup('0/0',
         CASE WHEN $1::int8 IS NULL THEN clock_timestamp()
              ELSE 'epoch'::timestamptz + $1::int8 * interval '1 microsecond' END)`,
      [ts === '' ? null : ts],
    )
    for (const it of group) {
      const action: RepairResult['action'] =
        it.image === null
          ? it.expect === null
            ? 'none'
            : 'delete'
          : it.expect === null
            ? 'insert'
            : 'update'
      if (action === 'none' || (action === 'update' && sql.update === undefined)) {
        out.push({ k: it.k, outcome: 'unchanged', action })
        continue
      }
      await c.query('SAVEPOINT trktr_repair_key')
      try {
        const r =
          action === 'insert'
            ? await c.query(sql.insert, [it.image])
            : action === 'update'
              ? await c.query(sql.update as string, [it.image, it.expect])
              : await c.query(sql.delete, [it.k, it.expect])
        if ((r.rowCount ?? 0) === 0) {
          out.push({ k: it.k, outcome: 'changed', action })
        } else {
          await c.query(LEDGER, [
            l.relation,
            it.k,
            action,
            it.winner,
            it.ts,
            it.expect,
            it.image,
            it.rule ?? meta.rule,
            meta.checkId,
            meta.coordinator,
          ])
          out.push({ k: it.k, outcome: 'repaired', action })
        }
        await c.query('RELEASE SAVEPOINT trktr_repair_key')
      } catch (err) {
        await c.query('ROLLBACK TO SAVEPOINT trktr_repair_key')
        const e = err as { code?: string; message?: string }
        out.push({
          k: it.k,
          outcome: 'failed',
          action,
          error: `${e.code ? `${e.code} ` : ''}${e.message ?? String(err)}`,
        })
      }
    }
    await c.query('COMMIT')
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined)
    throw err instanceof TraktorError
      ? err
      : new TraktorError('ERR_POSTGRES', String((err as Error).message), { cause: err })
  }
  return out
}

export interface RepairEntry {
  occurred: string
  lsn: string
  relation: string
  key: string
  action: string
  winner: number
  /** the winning version's commit time (ISO 8601), if known */
  winnerTs: string | null
  rule: string
  image: string | null
}

/** The repairs this node applied, newest first. */
export async function listRepairs(db: Db, limit = 1000): Promise<RepairEntry[]> {
  const rows = await db.query<{
    occurred: Date
    lsn: string
    relation: string
    key: string
    action: string
    winner: number
    winner_ts: Date | null
    rule: string
    image: string | null
  }>(
    `SELECT occurred, lsn::text AS lsn, relation, key, action, winner, winner_ts, rule, image
     FROM trktr.repairs ORDER BY occurred DESC, id DESC LIMIT $1`,
    [limit],
  )
  return rows.map((r) => ({
    occurred: r.occurred instanceof Date ? r.occurred.toISOString() : String(r.occurred),
    lsn: r.lsn,
    relation: r.relation,
    key: r.key,
    action: r.action,
    winner: r.winner,
    winnerTs: r.winner_ts instanceof Date ? r.winner_ts.toISOString() : r.winner_ts,
    rule: r.rule,
    image: r.image,
  }))
}
