// The resolver's decision, pure: from the subscriptions as they are and the failures the log
// shows, what to do with each disabled subscription. No I/O here, so it is unit-tested alone.
import type { ResolverStrategy } from '../config/types.js'
import { isConflict, isConnectionLoss } from '../postgres/logparse.js'
import type { ApplyFailure } from './failures.js'

export interface SubscriptionView {
  name: string
  oid: number
  enabled: boolean
}

export type Action =
  /** a conflicting remote transaction: record it, SKIP it, enable (local write wins) */
  | { kind: 'skip'; subscription: string; failure: ApplyFailure & { finishLsn: string } }
  /** the publisher went away (shut down, network): enable again, never skip */
  | { kind: 'enable'; subscription: string; failure: ApplyFailure }
  /** anything else: record and report it, leave the subscription for the operator */
  | { kind: 'record'; subscription: string; failure: ApplyFailure }

export interface Backoff {
  delayMs: number
  lastMs: number
}

export interface DecideState {
  /** failure id last acted on, per subscription */
  handled: Map<string, string>
  /** re-enable backoff per subscription (a peer that stays down) */
  backoff: Map<string, Backoff>
}

export const BACKOFF_MIN_MS = 1000
export const BACKOFF_MAX_MS = 30_000
/** a subscription that stayed enabled this long starts its backoff afresh */
export const BACKOFF_RESET_MS = 60_000

export function newDecideState(): DecideState {
  return { handled: new Map(), backoff: new Map() }
}

export function decide(
  subs: readonly SubscriptionView[],
  latest: (s: SubscriptionView) => ApplyFailure | undefined,
  state: DecideState,
  strategy: ResolverStrategy,
  nowMs: number,
): Action[] {
  const actions: Action[] = []
  for (const s of subs) {
    if (s.enabled) continue
    const failure = latest(s)
    // disabled with no logged failure (or only one already acted on): an operator's choice
    if (!failure || state.handled.get(s.name) === failure.id) continue
    if (isConnectionLoss(failure.sqlState)) {
      const b = state.backoff.get(s.name)
      if (b && nowMs - b.lastMs < b.delayMs) continue
      actions.push({ kind: 'enable', subscription: s.name, failure })
    } else if (
      isConflict(failure.sqlState) &&
      failure.finishLsn !== undefined &&
      strategy === 'skip'
    ) {
      actions.push({
        kind: 'skip',
        subscription: s.name,
        failure: { ...failure, finishLsn: failure.finishLsn },
      })
    } else {
      actions.push({ kind: 'record', subscription: s.name, failure })
    }
  }
  return actions
}

/** After acting: remember the failure, and grow the backoff of a re-enable. */
export function acted(state: DecideState, action: Action, nowMs: number): void {
  state.handled.set(action.subscription, action.failure.id)
  if (action.kind !== 'enable') return
  const b = state.backoff.get(action.subscription)
  const fresh = !b || nowMs - b.lastMs > BACKOFF_RESET_MS
  const delayMs = fresh ? BACKOFF_MIN_MS : Math.min(b.delayMs * 2, BACKOFF_MAX_MS)
  state.backoff.set(action.subscription, { delayMs, lastMs: nowMs })
}
