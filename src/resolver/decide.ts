// The resolver's decision, pure: from the subscriptions as they are and the failures the log
// shows, what to do with each disabled subscription. No I/O here, so it is unit-tested alone.
//
// A failure in the log is acted on only when the server's own counter agrees that an apply
// error happened: pg_stat_subscription_stats.apply_error_count must have grown since the
// resolver last acted on that subscription. Log text can be made by anyone who can make the
// server log a line (issue 8, item 4); the counter is bumped only by the apply worker. A lost
// publisher (08006) is an apply error too, so it counts; an operator's DISABLE does not.
import type { ResolverStrategy } from '../config/types.js'
import { isConflict, isConnectionLoss, isTransient } from '../postgres/logparse.js'
import type { ApplyFailure } from './failures.js'

export interface SubscriptionView {
  name: string
  oid: number
  enabled: boolean
  /** pg_stat_subscription_stats.apply_error_count */
  applyErrors: number
  /** pg_stat_subscription_stats.stats_reset (null: never reset) */
  statsReset: string | null
  /** the running apply worker (null or absent: none) */
  workerPid?: number | null
  /** when the server started (absent: not known) */
  serverStart?: string
}

/** A subscription's apply error count as the resolver saw it when it acted. */
export interface ErrorCount {
  oid: number
  applyErrors: number
  statsReset: string | null
}

export type Action =
  /** a conflicting remote transaction: record it, SKIP it, enable (local write wins) */
  (
    | { kind: 'skip'; subscription: string; failure: ApplyFailure & { finishLsn: string } }
    /** the publisher went away (shut down, network): enable again, never skip */
    | { kind: 'enable'; subscription: string; failure: ApplyFailure }
    /**
     * resolver lww, an insert on a key that exists (23505): switch the table's insert branch on
     * (row-level resolution takes over) and enable; the rest of the transaction applies
     */
    | { kind: 'arm'; subscription: string; failure: ApplyFailure }
    /** anything else: record and report it, leave the subscription for the operator */
    | { kind: 'record'; subscription: string; failure: ApplyFailure }
  ) & {
    /** the count that let this action through; the next one must be higher */
    counted: ErrorCount
  }

export interface Backoff {
  delayMs: number
  lastMs: number
}

export interface DecideState {
  /** failure id last acted on, per subscription */
  handled: Map<string, string>
  /** apply error count when the resolver last acted, per subscription */
  counted: Map<string, ErrorCount>
  /** re-enable backoff per subscription (a peer that stays down) */
  backoff: Map<string, Backoff>
  /** how often the insert branch was armed for one failing remote transaction */
  armed: Map<string, number>
}

export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 30_000
/** a subscription that stayed enabled this long starts its backoff afresh */
export const BACKOFF_RESET_MS = 60_000
/**
 * Arming (and re-enabling) is tried this many times for one failing remote transaction; a
 * 23505 that persists after that is a conflict the row-level branch cannot take (a partial or
 * expression unique index, a table another references; lww.ts displaceSql): that transaction
 * is skipped, and recorded.
 */
export const ARM_ATTEMPTS = 3

export function newDecideState(): DecideState {
  return { handled: new Map(), counted: new Map(), backoff: new Map(), armed: new Map() }
}

/**
 * Whether the server counted an apply error for this subscription since the resolver last
 * acted on it (ever, if it has not). A count that went down or was reset, or a subscription
 * made anew under the same name, starts again from 0: crash recovery discards statistics.
 */
export function applyErrorCounted(s: SubscriptionView, last: ErrorCount | undefined): boolean {
  const startedOver =
    last === undefined ||
    last.oid !== s.oid ||
    last.statsReset !== s.statsReset ||
    last.applyErrors > s.applyErrors
  return s.applyErrors > (startedOver ? 0 : last.applyErrors)
}

/**
 * The server started again since this failure was logged, and its count is 0: a crash or an
 * immediate shutdown discards the statistics (crash recovery), so no count can confirm what
 * the log says. Taken on the log's word (an apply worker's record) for a failure whose action
 * is to enable the subscription again only: a lost publisher, a deadlock. Seen in the fault
 * suite: node 1 killed, node 2's subscription to it disabled by the lost connection, node 2
 * shut down immediately 10 ms later; it stayed disabled for good.
 */
export function countLostInRestart(s: SubscriptionView, failure: ApplyFailure): boolean {
  if (!isConnectionLoss(failure.sqlState) && !isTransient(failure.sqlState)) return false
  if (s.applyErrors !== 0 || s.serverStart === undefined) return false
  const at = Date.parse(failure.at)
  const start = Date.parse(s.serverStart)
  return Number.isFinite(at) && Number.isFinite(start) && at < start
}

/** Whether the server's count, or a restart that discarded it, confirms the logged failure. */
function confirmed(s: SubscriptionView, failure: ApplyFailure, state: DecideState): boolean {
  return applyErrorCounted(s, state.counted.get(s.name)) || countLostInRestart(s, failure)
}

export function decide(
  subs: readonly SubscriptionView[],
  latest: (s: SubscriptionView) => ApplyFailure | undefined,
  state: DecideState,
  /** one for every table, or per table (a failure's relation, "schema.table" as logged) */
  strategy: ResolverStrategy | ((relation: string | undefined) => ResolverStrategy),
  nowMs: number,
): Action[] {
  const actions: Action[] = []
  for (const s of subs) {
    if (s.enabled) continue
    const failure = latest(s)
    // disabled with no logged failure (or only one already acted on): an operator's choice
    if (!failure || state.handled.get(s.name) === failure.id) continue
    // logged, but not counted by the server: not an apply worker's failure, or one whose count
    // is not flushed yet (the worker flushes it as it exits, after the subscription is
    // disabled); the next cycle sees it
    if (!confirmed(s, failure, state)) continue
    const counted = { oid: s.oid, applyErrors: s.applyErrors, statsReset: s.statsReset }
    const strat = typeof strategy === 'function' ? strategy(failure.relation) : strategy
    if (isTransient(failure.sqlState)) {
      // a deadlock or a serialization failure is over once the other party went on: enabled
      // again at once, whatever came before (the backoff is for a publisher that stays away;
      // on hot rows deadlocks come every few seconds, and it grew to 30 s, replication with it)
      actions.push({ kind: 'enable', subscription: s.name, failure, counted })
    } else if (isConnectionLoss(failure.sqlState)) {
      const b = state.backoff.get(s.name)
      if (b && nowMs - b.lastMs < b.delayMs) continue
      actions.push({ kind: 'enable', subscription: s.name, failure, counted })
    } else if (strat === 'lww' && failure.sqlState === '23505' && !stuck(s.name, failure, state)) {
      // arm (again: two apply workers inserting one new key at once make one of them fail
      // even when armed; the retry finds the row and the trigger takes it)
      actions.push({ kind: 'arm', subscription: s.name, failure, counted })
    } else if (strat === 'lww' && failure.sqlState === '23505' && failure.finishLsn !== undefined) {
      // the same transaction failed with 23505 though armed, time after time: a conflict the
      // row-level branch cannot take (a partial or expression unique index, ...)
      actions.push({
        kind: 'skip',
        subscription: s.name,
        failure: { ...failure, finishLsn: failure.finishLsn },
        counted,
      })
    } else if (
      isConflict(failure.sqlState) &&
      failure.finishLsn !== undefined &&
      strat === 'skip'
    ) {
      actions.push({
        kind: 'skip',
        subscription: s.name,
        failure: { ...failure, finishLsn: failure.finishLsn },
        counted,
      })
    } else {
      actions.push({ kind: 'record', subscription: s.name, failure, counted })
    }
  }
  return actions
}

/**
 * What is behind a running subscription is settled: an enabled subscription whose apply worker
 * runs and is not the process that logged its latest failure has nothing pending (the worker
 * that failed disabled the subscription before it exited, and someone enabled it since). Its
 * latest logged failure counts as handled. Without this, an arbiter restarted with an old
 * failure in the log would act on it again the first time an operator disables that
 * subscription. Only the failure's id is taken, never the server's error count: a worker bumps
 * that count before the catalog says disabled and before the log line reaches us, and taking
 * the count then would leave the new failure uncounted (the subscription left disabled).
 */
export function settle(
  subs: readonly SubscriptionView[],
  latest: (s: SubscriptionView) => ApplyFailure | undefined,
  state: DecideState,
): void {
  for (const s of subs) {
    if (!s.enabled || s.workerPid === null || s.workerPid === undefined) continue
    const failure = latest(s)
    if (failure && failure.pid === s.workerPid) continue
    if (failure) state.handled.set(s.name, failure.id)
  }
}

/**
 * Disabled subscriptions with a new logged failure that decide() did not take because the
 * server counted no apply error for it: said in the verdict, so a subscription left disabled
 * is never left silently.
 */
export function uncounted(
  subs: readonly SubscriptionView[],
  latest: (s: SubscriptionView) => ApplyFailure | undefined,
  state: DecideState,
): string[] {
  return subs
    .filter((s) => {
      if (s.enabled) return false
      const failure = latest(s)
      if (!failure || state.handled.get(s.name) === failure.id) return false
      return !confirmed(s, failure, state)
    })
    .map((s) => s.name)
}

/** The same remote transaction failed with 23505 this many times though armed. */
function stuck(sub: string, f: ApplyFailure, state: DecideState): boolean {
  return (state.armed.get(`${sub}|${f.finishLsn ?? f.id}`) ?? 0) >= ARM_ATTEMPTS
}

/** After acting: remember the failure, and grow the backoff of a re-enable. */
export function acted(state: DecideState, action: Action, nowMs: number): void {
  state.handled.set(action.subscription, action.failure.id)
  state.counted.set(action.subscription, action.counted)
  if (action.kind === 'arm') {
    const key = `${action.subscription}|${action.failure.finishLsn ?? action.failure.id}`
    state.armed.set(key, (state.armed.get(key) ?? 0) + 1)
    // forget transactions long done (a map per failing transaction must not grow for ever)
    if (state.armed.size > 1000) state.armed.delete(state.armed.keys().next().value as string)
  }
  if (action.kind !== 'enable' || !isConnectionLoss(action.failure.sqlState)) return
  const b = state.backoff.get(action.subscription)
  const fresh = !b || nowMs - b.lastMs > BACKOFF_RESET_MS
  const delayMs = fresh ? BACKOFF_MIN_MS : Math.min(b.delayMs * 2, BACKOFF_MAX_MS)
  state.backoff.set(action.subscription, { delayMs, lastMs: nowMs })
}
