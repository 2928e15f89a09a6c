// A dial target's backoff: 250 ms doubling to 5 s, reset only after a connection that lasted.
// Pure, so the schedule is unit-testable (mesh-redial.test.ts); the Redialer (redial.ts) keeps
// one per peer and bootstrap address.

export const REDIAL_MIN_DELAY_MS = 250
export const REDIAL_MAX_DELAY_MS = 5000
/** A connection counts as a success (backoff reset) only once it has lasted this long. */
export const REDIAL_STABLE_MS = 2000
export interface Backoff {
  delay: number
  nextAt: number
  inFlight: boolean
  /** when this target was last seen connected, if it still is */
  upSince: number | undefined
  /** how long an "at once" redial waits (redial.ts DEFER_MS) */
  deferMs: number
}

/** A target never dialed yet. */
export function fresh(deferMs = 0): Backoff {
  return { delay: REDIAL_MIN_DELAY_MS, nextAt: 0, inFlight: false, upSince: undefined, deferMs }
}

/**
 * Advances one target's backoff given whether it is connected now; returns true when it
 * should be dialled. Pure, so the schedule is unit-testable.
 */
export function due(b: Backoff, connected: boolean, now: number): boolean {
  if (connected) {
    b.upSince ??= now
    if (now - b.upSince >= REDIAL_STABLE_MS) b.delay = REDIAL_MIN_DELAY_MS
    return false
  }
  if (b.upSince !== undefined) {
    // it was connected and is not any more: redial at once if it had been up a while,
    // otherwise (refused right after the handshake, say) keep backing off
    if (now - b.upSince >= REDIAL_STABLE_MS) {
      b.delay = REDIAL_MIN_DELAY_MS
      b.nextAt = now + b.deferMs
    } else {
      failed(b, now)
    }
    b.upSince = undefined
  }
  return !b.inFlight && now >= b.nextAt
}

export function failed(b: Backoff, now: number): void {
  b.nextAt = now + b.delay
  b.delay = Math.min(b.delay * 2, REDIAL_MAX_DELAY_MS)
}
