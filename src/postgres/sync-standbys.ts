// Synchronous mode's PostgreSQL side (DESIGN, issue 15): the node's synchronous_standby_names,
// set with ALTER SYSTEM + reload to ANY k of the peers' subscriptions to this node (their walsenders
// carry the subscription's name), and what the walsenders report. Facts (pg17-facts §6): a
// waiter is released at once only when the setting goes to '' — shrinking the list releases it
// at the remaining standbys' next status reply — so a removal passes through '' first.
import type { Db } from './db.js'
import { quoteIdent, quoteLiteral } from './ident.js'
import { subscriptionName } from './subscriptions.js'

export interface WalSender {
  /** the subscriber's nodeId, from the walsender's application_name trktr_sub_<peer>_<self> */
  peer: number
  state: string
  /** WAL not yet applied by the subscriber (bytes); null before its first feedback */
  lagBytes: number | null
}

/** The peers' subscriptions to `self` that stream from it now. */
export async function walSenders(db: Db, self: number): Promise<WalSender[]> {
  const rows = await db.query<{ application_name: string; state: string; lag: string | null }>(
    `SELECT application_name, state,
            pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8::text AS lag
     FROM pg_stat_replication WHERE application_name LIKE 'trktr\\_sub\\_%'`,
  )
  const out: WalSender[] = []
  for (const r of rows) {
    const m = /^trktr_sub_(\d+)_(\d+)$/.exec(r.application_name)
    if (!m || Number(m[2]) !== self) continue
    out.push({
      peer: Number(m[1]),
      state: r.state,
      lagBytes: r.lag === null ? null : Number(r.lag),
    })
  }
  return out
}

export async function currentStandbys(db: Db): Promise<string> {
  const [r] = await db.query<{ v: string }>(
    `SELECT setting AS v FROM pg_settings WHERE name = 'synchronous_standby_names'`,
  )
  return r?.v ?? ''
}

/**
 * The setting that waits for `quorum` (default: every one) of `peers`' subscriptions to `self`;
 * '' for none.
 */
export function standbysValue(self: number, peers: readonly number[], quorum?: number): string {
  if (peers.length === 0) return ''
  const names = [...peers].sort((a, b) => a - b).map((p) => quoteIdent(subscriptionName(p, self)))
  return `ANY ${Math.min(quorum ?? peers.length, peers.length)} (${names.join(', ')})`
}

/** Whether this role may set synchronous_standby_names and reload (sync mode's grants). */
export async function maySetStandbys(db: Db): Promise<boolean> {
  const [r] = await db.query<{ ok: boolean }>(
    `SELECT has_parameter_privilege('synchronous_standby_names', 'ALTER SYSTEM')
        AND has_function_privilege('pg_reload_conf()', 'EXECUTE') AS ok`,
  )
  return r?.ok === true
}

/** A value traktor wrote (so it may replace it): empty, or only our subscriptions' names. */
export function isOurs(value: string): boolean {
  return value === '' || /^ANY \d+ \(("trktr_sub_\d+_\d+"(, )?)+\)$/.test(value)
}

export async function setStandbys(db: Db, value: string): Promise<void> {
  // ALTER SYSTEM takes no parameters: the value is a quoted literal of names we made
  await db.query(`ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(value)}`)
  await db.query('SELECT pg_reload_conf()')
}

/**
 * Release every commit waiting for the standbys now: the setting goes to '' and this returns
 * once no backend waits in SyncRep (true) or after `deadlineMs` (false). The wait matters: the
 * checkpointer applies the reload that wakes the waiters, and a second reload right after (the
 * new set) can reach it first, so it never sees '' and the waiters stay until the remaining
 * standbys' next status reply (wal_receiver_status_interval, 10 s; seen in CI).
 */
export async function releaseWaiters(db: Db, deadlineMs = 2000): Promise<boolean> {
  await setStandbys(db, '')
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const [r] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`,
    )
    if ((r?.n ?? 0) === 0) return true
    if (Date.now() > deadline) return false
    await new Promise((res) => setTimeout(res, 10))
  }
}

/** An apply worker on this node waiting for a lock held by a local commit that waits in SyncRep. */
export interface BlockedApplier {
  /** the node whose changes the worker applies */
  peer: number
  applier: number
  waiter: number
}

/**
 * Apply workers of our subscriptions blocked by a local backend waiting for synchronous
 * replication: half of a write-write cycle (that commit holds its row locks while it waits for
 * the peers, and a peer's commit of the same rows waits for this node's apply worker).
 */
export async function blockedAppliers(db: Db, self: number): Promise<BlockedApplier[]> {
  const rows = await db.query<{ subname: string; applier: number; waiter: number }>(
    `SELECT s.subname::text AS subname, s.pid AS applier, b.pid AS waiter
       FROM pg_stat_subscription s
      CROSS JOIN LATERAL unnest(pg_blocking_pids(s.pid)) AS bp(pid)
       JOIN pg_stat_activity b ON b.pid = bp.pid
      WHERE s.pid IS NOT NULL AND s.relid IS NULL AND b.wait_event = 'SyncRep'
        AND s.subname LIKE 'trktr\\_sub\\_%'`,
  )
  const out: BlockedApplier[] = []
  for (const r of rows) {
    const m = /^trktr_sub_(\d+)_(\d+)$/.exec(r.subname)
    if (!m || Number(m[1]) !== self) continue
    out.push({ peer: Number(m[2]), applier: r.applier, waiter: r.waiter })
  }
  return out
}
