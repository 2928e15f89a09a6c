// When a node still learning members holds back its dials (redial.ts). A sparse mesh waits for
// its ring to settle: each new member moves the neighbours of the others, and every dial to a
// neighbour of a moment is a connection made (~50 ms of CPU) and kept. A full mesh learning
// members (a start: records passed on by its bootstrap peer, hello.ts) waits a little too, and
// not long: its bootstrap peer's handshakes, through which every node hears of every other,
// come first instead of queueing behind the ~N²/2 others on two cores.

/** a sparse mesh dials its ring once no new member was learned of for this long */
export const RING_SETTLE_MS = 1000
/** a full mesh dials once no member was learned for this long ... */
export const FULL_SETTLE_MS = 400
/** ... and at most this long after the first of a burst (monotonic ms) */
export const FULL_SETTLE_MAX_MS = 1500

export class Settle {
  /** when the number of members last changed (monotonic ms) */
  private learnedAt = -Infinity
  /** when the members began to change after a quiet time (monotonic ms) */
  private burstAt = -Infinity
  private count = 0

  /** The number of members as of `now`: a change is a member learned. */
  note(count: number, now: number): void {
    if (count === this.count) return
    this.count = count
    if (now - this.learnedAt >= FULL_SETTLE_MS) this.burstAt = now
    this.learnedAt = now
  }

  /** Whether dials other than to the bootstrap peers wait now. */
  settling(now: number, sparse: boolean): boolean {
    if (sparse) return now - this.learnedAt < RING_SETTLE_MS
    return now - this.learnedAt < FULL_SETTLE_MS && now - this.burstAt < FULL_SETTLE_MAX_MS
  }
}
