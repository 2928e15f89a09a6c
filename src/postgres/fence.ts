// The write fence that closes PostgreSQL's silent-loss window while a table joins or leaves
// the publications: from PREPARE until every subscription has refreshed, writers to the table
// wait (they do not fail). A statement trigger locks the table's row in trktr.fences FOR
// SHARE, while the arbiter holds that row FOR UPDATE in an open transaction for the fence's
// duration. trktr is closed to every other role, so no other user can take that lock and
// stall or defeat a change (an advisory lock is open to anyone). The trigger function is
// SECURITY DEFINER so that writers reach the row without any right on trktr. Apply workers run
// with session_replication_role = replica, so ordinary triggers do not fire for them and
// replication keeps flowing. The lock belongs to one session: if the arbiter dies, the server
// releases it and writers go on. Every lock this module waits for has a timeout set first.
import { type Db, type HeldSession, pgError, type Queryable } from './db.js'
import { formatRelation, qualified, type RelationName } from './ident.js'

export const FENCE_TRIGGER = 'trktr_fence'
/** how long raising a fence may wait for writers already in the table (then it refuses) */
export const FENCE_LOCK_TIMEOUT_MS = 2000

/**
 * The table's oid, and its row in trktr.fences created (committed) so that writers can find
 * and wait on it: one round trip.
 */
const ENSURE_ROW = `
WITH r AS (SELECT to_regclass($1)::oid AS relid),
ins AS (INSERT INTO trktr.fences (relid) SELECT relid FROM r WHERE relid IS NOT NULL
        ON CONFLICT (relid) DO NOTHING)
SELECT relid::int8 AS relid FROM r`
/** In the held session, one round trip: the row held until the fence is lowered. */
const holdRow = (relid: bigint, lockTimeoutMs: number) =>
  `BEGIN; SET LOCAL lock_timeout = ${Math.round(lockTimeoutMs)};
   SELECT relid FROM trktr.fences WHERE relid = ${relid} FOR UPDATE`

/** The fence's trigger (re-)created, as statements of one transaction. */
const triggerStatements = (rel: RelationName, lockTimeoutMs: number) => [
  `SET LOCAL lock_timeout = ${Math.round(lockTimeoutMs)}`,
  `DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified(rel)}`,
  `CREATE TRIGGER ${FENCE_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${qualified(rel)}
     FOR EACH STATEMENT EXECUTE FUNCTION trktr.fence_wait()`,
]

type State =
  | { kind: 'lowered' }
  | { kind: 'raising'; held: HeldSession; cancelled: boolean }
  | { kind: 'raised'; held: HeldSession }

export interface FenceInit {
  db: Db
  rel: RelationName
  lockTimeoutMs?: number
  /**
   * Runs in the transaction that creates the trigger, under the table's lock (a proposal's
   * prepare installs the table's other triggers and records itself there): committed with the
   * fence, or not at all. What it returns is called once that transaction committed.
   */
  work?: (c: Queryable) => Promise<() => void>
}

export class Fence {
  private state: State = { kind: 'lowered' }
  readonly rel: RelationName
  private readonly db: Db
  private readonly lockTimeoutMs: number
  private readonly work: FenceInit['work']

  constructor(init: FenceInit) {
    this.db = init.db
    this.rel = init.rel
    this.lockTimeoutMs = init.lockTimeoutMs ?? FENCE_LOCK_TIMEOUT_MS
    this.work = init.work
  }

  get held(): boolean {
    return this.state.kind === 'raised'
  }

  /**
   * Hold the table's fence row, then install the trigger. Writers already in the table must
   * finish within the lock timeout, or the fence is refused (and nothing stays behind).
   * Three round trips, and the work's own (FenceInit.work).
   */
  async raise(): Promise<void> {
    if (this.state.kind !== 'lowered') return
    const name = qualified(this.rel)
    const held = await this.db.hold()
    const state: State = { kind: 'raising', held, cancelled: false }
    this.state = state
    try {
      const [row] = await this.db.query<{ relid: string | null }>(ENSURE_ROW, [name])
      if (!row?.relid) throw new Error(`table ${formatRelation(this.rel)} does not exist`)
      await held.query(holdRow(BigInt(row.relid), this.lockTimeoutMs))
      // DROP TRIGGER takes the table's ACCESS EXCLUSIVE lock (even when there is none to drop):
      // `work` runs under it
      const trigger = triggerStatements(this.rel, this.lockTimeoutMs)
      const { work } = this
      if (work) (await this.db.tx(work, trigger))()
      else await this.db.script(trigger)
      if (state.cancelled) throw new Error('fence lowered while it was being raised')
      this.state = { kind: 'raised', held }
    } catch (err) {
      this.state = { kind: 'lowered' }
      held.release(true)
      await this.dropTrigger().catch(() => undefined)
      const shown = formatRelation(this.rel)
      const e = pgError(err, `fence ${shown}`)
      if (e.sqlState === '55P03') {
        e.message = `cannot fence ${shown}: a transaction kept writing to it for more than ${this.lockTimeoutMs} ms (lock timeout)`
      }
      throw e
    }
  }

  /**
   * Let writers go (end the transaction that holds the row), then drop the trigger. Safe at
   * any time: a fence still being raised is cancelled and leaves nothing behind.
   */
  async lower(): Promise<RelationName[]> {
    const s = this.state
    if (s.kind === 'lowered') return []
    if (s.kind === 'raising') {
      // the raise finishes (or times out) on its own and cleans up after itself
      s.cancelled = true
      s.held.release(true)
      return []
    }
    this.state = { kind: 'lowered' }
    try {
      await s.held.query('ROLLBACK')
      s.held.release()
    } catch {
      s.held.release(true)
    }
    // a trigger left behind blocks no one (the row is free): the caller drops it later
    return await this.dropTrigger().then(
      () => [],
      () => [this.rel],
    )
  }

  private async dropTrigger(): Promise<void> {
    await dropFenceTrigger(this.db, this.rel, this.lockTimeoutMs)
  }
}

const STALE = `
SELECT n.nspname AS schema, c.relname AS table FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname = $1`

/**
 * Drop fence triggers a crashed arbiter left behind (they no longer block anyone), and clear
 * cancel flags. A table a prepared cluster DDL still holds is skipped (lock timeout): the
 * prepared transaction drops its trigger itself when it commits, and recovery ends it.
 */
export async function dropStaleFences(db: Db): Promise<number> {
  await db.query(`UPDATE trktr.fences SET cancel = false WHERE cancel`)
  const rows = await db.query<{ schema: string; table: string }>(STALE, [FENCE_TRIGGER])
  let dropped = 0
  for (const r of rows) {
    if (
      await dropFenceTrigger(db, r).then(
        () => true,
        () => false,
      )
    )
      dropped++
  }
  return dropped
}

/** Drop one table's fence trigger (waiting at most the fence's lock timeout): one round trip. */
export async function dropFenceTrigger(
  db: Db,
  rel: RelationName,
  lockTimeoutMs = FENCE_LOCK_TIMEOUT_MS,
): Promise<void> {
  await db.script([
    `SET LOCAL lock_timeout = ${Math.round(lockTimeoutMs)}`,
    `DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified(rel)}`,
  ])
}

/**
 * Every replicated table fenced by one held session: a node copying the cluster's data keeps
 * its local writers waiting until the copy is in place and the members subscribe to it (the
 * copy itself writes with session_replication_role = replica, so the triggers skip it). A table
 * that cannot be fenced (a writer in it past the lock timeout) is left out and named.
 */
export class FenceSet {
  private held: HeldSession | undefined
  private fenced: RelationName[] = []
  private relids: string[] = []
  /** waiters were told to fail (cancelWaiters): their rows' flags are reset when lowered */
  private cancelled = false
  private readonly db: Db
  private readonly lockTimeoutMs: number

  constructor(init: { db: Db; lockTimeoutMs?: number }) {
    this.db = init.db
    this.lockTimeoutMs = init.lockTimeoutMs ?? FENCE_LOCK_TIMEOUT_MS
  }

  get tables(): readonly RelationName[] {
    return this.fenced
  }

  /** Fence these tables (any fenced before stay); returns the ones that could not be fenced. */
  async raise(rels: readonly RelationName[]): Promise<Array<{ rel: RelationName; err: string }>> {
    const failed: Array<{ rel: RelationName; err: string }> = []
    const timeout = Math.round(this.lockTimeoutMs)
    const relids: string[] = []
    for (const rel of rels) {
      const [row] = await this.db.query<{ relid: string | null }>(ENSURE_ROW, [qualified(rel)])
      if (row?.relid) relids.push(row.relid)
    }
    for (const r of relids) if (!this.relids.includes(r)) this.relids.push(r)
    if (!this.held) {
      const held = await this.db.hold()
      try {
        await held.query(`SET lock_timeout = ${timeout}`)
        await held.query('BEGIN')
      } catch (err) {
        held.release(true)
        throw pgError(err, 'hold the fence rows')
      }
      this.held = held
    }
    await this.held.query(
      `SELECT relid FROM trktr.fences WHERE relid = ANY ($1::oid[]) FOR UPDATE`,
      [relids],
    )
    for (const rel of rels) {
      if (this.fenced.some((f) => f.schema === rel.schema && f.table === rel.table)) continue
      try {
        await this.db.script(triggerStatements(rel, timeout))
        this.fenced.push(rel)
      } catch (err) {
        failed.push({ rel, err: (err as Error).message })
      }
    }
    return failed
  }

  /**
   * Release the fence rows with their cancel flag set: the writers waiting in the trigger fail
   * (serialization_failure, retryable) instead of writing, and so give up the table locks a
   * cluster DDL needs. Writers that come later queue behind the DDL's own lock request.
   */
  async cancelWaiters(): Promise<void> {
    const held = this.held
    if (!held) return
    this.held = undefined
    this.cancelled = true
    try {
      await held.query(`UPDATE trktr.fences SET cancel = true WHERE relid = ANY ($1::oid[])`, [
        this.relids,
      ])
      await held.query('COMMIT')
      held.release()
    } catch (err) {
      held.release(true)
      throw pgError(err, 'release the fence rows')
    }
  }

  /** The session holding the fence rows still answers (a PostgreSQL restart ends it). */
  async holding(): Promise<boolean> {
    if (!this.held) return false
    try {
      await this.held.query('SELECT 1')
      return true
    } catch {
      return false
    }
  }

  /**
   * Let the writers go, then drop the triggers. Safe to call at any time, and again. Returns
   * the tables whose trigger could not be dropped now (a lock held elsewhere).
   */
  async lower(): Promise<RelationName[]> {
    const held = this.held
    this.held = undefined
    if (held) {
      try {
        await held.query('ROLLBACK')
        held.release()
      } catch {
        held.release(true)
      }
    }
    if (this.cancelled) {
      this.cancelled = false
      await this.db
        .query(`UPDATE trktr.fences SET cancel = false WHERE relid = ANY ($1::oid[]) AND cancel`, [
          this.relids,
        ])
        .catch(() => undefined)
    }
    const left: RelationName[] = []
    for (const rel of this.fenced) {
      await this.db
        .tx(async (c) => {
          await c.query(`SET LOCAL lock_timeout = ${Math.round(this.lockTimeoutMs)}`)
          await c.query(`DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${qualified(rel)}`)
        })
        .catch(() => left.push(rel))
    }
    this.fenced = []
    return left
  }
}
