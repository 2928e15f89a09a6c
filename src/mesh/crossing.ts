// Two nodes that learn of each other at the same moment would both dial, and each pair would
// keep two connections (each with its own identify, gossip streams, hello and liveness probes,
// for good: 16 nodes starting kept 180 connections for 120 pairs, measured). The dial of the
// node with the smaller peer id is the one kept: it dials at once; the other waits for it
// (deferMs), and a connection of the other's that crosses its dial anyway is refused (yields).

/**
 * The least a dial waits for the peer's own. A loopback dial takes tens of milliseconds; the
 * wait was 1 s, which was most of a new node's time to reach the members it did not bootstrap
 * from (0.6-1.5 s, measured).
 */
export const DEFER_MS = 300
/**
 * On busy cores a dial takes far longer (a whole mesh starting: seconds), so the wait is also
 * this many dials' time, as this node's dials take now (16 nodes starting: 187 dials for 120
 * pairs with 300 ms alone, 133 so; 32 nodes: 912 dials for 496 pairs, 564 so).
 */
const DEFER_DIALS = 3
/**
 * A connection crossing the smaller id's own dial is refused while that dial is in flight (at
 * most the dial timeout) or its connection opened less than this long ago (an older one may
 * be dead on the other side: the peer's connection is taken then).
 */
export const SECOND_DIAL_MS = 3000
/** the refused side's failed dial is judged this long after (the peer's may be up by then) */
export const YIELD_GRACE_MS = 500

/** How long a dial waits for the peer's: DEFER_DIALS × the recent dials' time or the oldest's in flight. */
export function deferMs(recentDialMs: number, inFlightAges: Iterable<number>): number {
  let ms = recentDialMs
  for (const age of inFlightAges) ms = Math.max(ms, age)
  return Math.max(DEFER_MS, DEFER_DIALS * ms)
}

/**
 * Whether a connection from `peer` (its handshake done) crosses this node's own and is refused:
 * this node's id is the smaller, and its dial of the peer is in flight, or its own connection
 * to the peer opened `openAge` ms ago (undefined: none).
 */
export function yields(
  self: string,
  peer: string,
  dialing: boolean,
  openAge: number | undefined,
): boolean {
  if (self >= peer) return false
  return dialing || (openAge !== undefined && openAge < SECOND_DIAL_MS)
}
