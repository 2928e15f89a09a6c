// The donor's side of a join with data (join-copy.ts has the procedure): a snapshot exported
// under a brief SHARE lock, with the donor's WAL position and its origins' remote LSNs, and the
// check that a peer's slot for the joining node has flushed past a point.
import pg from 'pg'
import { TraktorError } from '../errors.js'
import { clientConfig, pgError } from './db.js'
import { checkLsn, qualified, type RelationName } from './ident.js'

/** how long one attempt at the donor's SHARE lock may wait for its writers */
export const JOIN_LOCK_TIMEOUT_MS = 1000

/** A plain session to another node's PostgreSQL (donor or peer), closed by the caller. */
export async function connect(conninfo: string, name: string): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(conninfo, name))
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    throw pgError(err, 'connect')
  }
  return client
}

/**
 * Whether the donor holds a member's transactions up to a point, read over two connections kept
 * for the wait (one to the donor, one to the member; a fresh SCRAM login per poll cost more
 * than the poll). `donorApplied`: the donor's subscription's origin is at or past it (a
 * transaction ending there or later was applied, so every earlier one was) — known as soon as
 * the donor commits; `slotFlushed`: the donor's slot on the member is flushed past it — what a
 * member with no transaction after the point shows, after the donor's next feedback.
 */
export class CatchUpProbe {
  private constructor(
    private readonly donor: pg.Client,
    private readonly member: pg.Client,
  ) {}

  static async open(donorConn: string, memberConn: string, app: string): Promise<CatchUpProbe> {
    const donor = await connect(donorConn, app)
    try {
      return new CatchUpProbe(donor, await connect(memberConn, app))
    } catch (err) {
      await donor.end().catch(() => undefined)
      throw err
    }
  }

  async donorApplied(subscription: string, lsn: string): Promise<boolean> {
    try {
      const { rows } = await this.donor.query<{ ok: boolean | null }>(
        `SELECT pg_replication_origin_progress('pg_' || s.oid, false) >= $2::pg_lsn AS ok
         FROM pg_subscription s WHERE s.subname = $1`,
        [subscription, checkLsn(lsn)],
      )
      return rows[0]?.ok === true
    } catch (err) {
      throw pgError(err, `read the origin of ${subscription}`)
    }
  }

  async slotFlushed(slot: string, lsn: string): Promise<{ ok: boolean; flushed: string | null }> {
    try {
      const { rows } = await this.member.query<{ ok: boolean; flushed: string | null }>(
        `SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok, confirmed_flush_lsn::text AS flushed
         FROM pg_replication_slots WHERE slot_name = $1`,
        [slot, checkLsn(lsn)],
      )
      return { ok: rows[0]?.ok ?? false, flushed: rows[0]?.flushed ?? null }
    } catch (err) {
      throw pgError(err, `read slot ${slot}`)
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.donor.end(), this.member.end()].map((p) => p.catch(() => undefined)))
  }
}

export interface SnapshotPoint {
  snapshot: string
  /** the donor's WAL insert position: its own transactions up to here are in the snapshot */
  walLsn: string
  /** per donor subscription name: the remote LSN its origin had applied (null: nothing yet) */
  origins: Map<string, string | null>
  /** how long the donor's writers waited on the SHARE lock (ms) */
  pauseMs: number
  /** lock attempts that timed out before one succeeded */
  lockRetries: number
  /** the donor's estimate of the rows to copy (pg_class.reltuples) */
  rowsEstimated: number
}

export interface ExportInit {
  conninfo: string
  appName: string
  tables: readonly RelationName[]
  /** the donor's subscriptions whose origins' positions are read with the snapshot */
  subscriptions: readonly string[]
  lockTimeoutMs?: number
  attempts?: number
  signal?: AbortSignal
}

export interface ExportedSnapshot {
  point: SnapshotPoint
  /** end the exporting transaction (after every copy has imported the snapshot) */
  release(): Promise<void>
}

const EXPORT = `
SELECT pg_export_snapshot() AS snapshot, pg_current_wal_insert_lsn()::text AS wal,
       COALESCE((SELECT json_object_agg(s.subname, pg_replication_origin_progress('pg_' || s.oid, false)::text)
                   FROM pg_subscription s WHERE s.subname = ANY ($1::text[])), '{}'::json) AS origins`
// a table never analysed (reltuples -1, freshly loaded) is counted by the statistics system
const ESTIMATE = `SELECT COALESCE(sum(CASE WHEN c.reltuples >= 0 THEN c.reltuples
                                           ELSE coalesce(pg_stat_get_live_tuples(c.oid), 0) END), 0)::int8 AS n
                  FROM pg_class c WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)`
// two statements: a query naming the queue fails to parse where lww never made it (resolver skip)
const HAS_QUEUE = `SELECT to_regclass('trktr.conflict_queue') IS NOT NULL AS has`
const QUEUED = `SELECT EXISTS (SELECT 1 FROM trktr.conflict_queue) AS queued`

/**
 * Export a snapshot on the donor under a brief SHARE lock of every replicated table: no local
 * writer and no apply worker can commit to them while the snapshot, the WAL position and the
 * origins' positions are read, so the three agree. A lock that times out (a long writer) is
 * tried again. A row-level resolution still queued on the donor would later be repaired under
 * an origin no subscriber receives: then the snapshot is not taken (ERR_JOIN_DONOR_BUSY).
 */
export async function exportSnapshot(init: ExportInit): Promise<ExportedSnapshot> {
  // the queue holds an entry for a moment whenever a row last written by one node is updated
  // by another (resolved in the next round, usually with nothing to repair): try again soon
  for (let busy = 0; ; busy++) {
    try {
      return await exportOnce(init)
    } catch (err) {
      if ((err as TraktorError).code !== 'ERR_JOIN_DONOR_BUSY' || busy >= BUSY_ATTEMPTS) throw err
      init.signal?.throwIfAborted()
      await new Promise((r) => setTimeout(r, BUSY_WAIT_MS))
    }
  }
}

const BUSY_ATTEMPTS = 50
const BUSY_WAIT_MS = 100

async function exportOnce(init: ExportInit): Promise<ExportedSnapshot> {
  const lockTimeout = init.lockTimeoutMs ?? JOIN_LOCK_TIMEOUT_MS
  const attempts = init.attempts ?? 10
  const lock = await connect(init.conninfo, `${init.appName}-lock`)
  let snap: pg.Client | undefined
  const abort = () => {
    void lock.end().catch(() => undefined)
    void snap?.end().catch(() => undefined)
  }
  init.signal?.addEventListener('abort', abort)
  try {
    snap = await connect(init.conninfo, `${init.appName}-snapshot`)
    await lock.query(`SET lock_timeout = ${Math.round(lockTimeout)}`)
    const list = init.tables.map(qualified).join(', ')
    let retries = 0
    for (;;) {
      await lock.query('BEGIN')
      try {
        if (list !== '') await lock.query(`LOCK TABLE ${list} IN SHARE MODE`)
        break
      } catch (err) {
        await lock.query('ROLLBACK').catch(() => undefined)
        const code = (err as { code?: string }).code
        // a long writer (lock timeout) or an apply worker holding one table and wanting another
        if ((code !== '55P03' && code !== '40P01') || ++retries >= attempts)
          throw pgError(err, 'lock the donor tables in SHARE mode')
        await new Promise((r) => setTimeout(r, 50 * retries))
      }
    }
    const locked = Date.now()
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const { rows } = await snap.query<{
      snapshot: string
      wal: string
      origins: Record<string, string | null>
    }>(EXPORT, [init.subscriptions])
    const hasQueue = (await snap.query<{ has: boolean }>(HAS_QUEUE)).rows[0]?.has ?? false
    const queued = hasQueue
      ? ((await snap.query<{ queued: boolean }>(QUEUED)).rows[0]?.queued ?? false)
      : false
    await lock.query('COMMIT')
    const pauseMs = Date.now() - locked
    const est = await snap.query<{ n: string }>(ESTIMATE, [init.tables.map(qualified)])
    const r = rows[0]
    if (!r) throw new Error('pg_export_snapshot returned nothing')
    if (queued) {
      throw new TraktorError(
        'ERR_JOIN_DONOR_BUSY',
        'the donor has row-level resolutions queued: a snapshot now would miss their repairs',
      )
    }
    const s = snap
    return {
      point: {
        snapshot: r.snapshot,
        walLsn: r.wal,
        origins: new Map(Object.entries(r.origins)),
        pauseMs,
        lockRetries: retries,
        rowsEstimated: Number(est.rows[0]?.n ?? 0),
      },
      release: async () => {
        await s.query('COMMIT').catch(() => undefined)
        await s.end().catch(() => undefined)
      },
    }
  } catch (err) {
    await snap?.end().catch(() => undefined)
    throw err instanceof TraktorError ? err : pgError(err, 'export a snapshot on the donor')
  } finally {
    init.signal?.removeEventListener('abort', abort)
    await lock.end().catch(() => undefined)
  }
}
