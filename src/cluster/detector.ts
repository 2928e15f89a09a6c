// The failure detector, pure: a member's state from when it was last heard and whether its
// connection is up. A connected member is heard every heartbeatMs (default 500 ms) by the
// mesh's liveness probe, and by its record when that is gossiped (membership.ts);
// silent past suspectAfterMs → suspect, past deadAfterMs → dead. A closed connection (a
// crashed arbiter's TCP reset) is stronger evidence: suspect at once, dead after
// suspectAfterMs unless it comes back — at once when a dial of it is then refused (nothing
// listens at its address: the process is gone, not frozen or cut off). Neither gossipsub's heartbeat nor libp2p's ping is
// the detector; the ping only closes frozen connections.

import { patience } from '../patience.js'

export type MemberState = 'alive' | 'suspect' | 'dead'

export interface Timings {
  heartbeatMs: number
  suspectAfterMs: number
  deadAfterMs: number
}

export interface Evidence {
  lastHeardMs: number
  /** when the connection closed, if it is closed now */
  disconnectedAtMs?: number
  /** when a dial of it was last refused (nothing listens at its address) */
  refusedAtMs?: number
}

/** `quiet`: the timings for silence alone (silenceTimings: a large sparse mesh's are longer) */
export function detect(e: Evidence, nowMs: number, t: Timings, quiet: Timings = t): MemberState {
  const silent = nowMs - e.lastHeardMs
  if (e.disconnectedAtMs !== undefined && e.disconnectedAtMs >= e.lastHeardMs) {
    // closed, and refused when dialled again: its process is gone
    if (e.refusedAtMs !== undefined && e.refusedAtMs >= e.disconnectedAtMs) return 'dead'
    return nowMs - e.disconnectedAtMs >= t.suspectAfterMs || silent >= t.deadAfterMs
      ? 'dead'
      : 'suspect'
  }
  if (silent >= quiet.deadAfterMs) return 'dead'
  if (silent >= quiet.suspectAfterMs) return 'suspect'
  return 'alive'
}

/**
 * When a member was last heard, as this node judges it after its own process stood still for
 * `stalledMs` (SIGSTOP, a blocked event loop): the silence in that time is not the member's, so
 * it moves up by as much — but never past a connection that closed after it was heard and was
 * then refused when dialled (its process is gone): one late timer turned a killed member into a
 * silent one, judged patiently, again after every late timer. A connection that closed only (a
 * start's crossing dials, a timeout on a loaded machine) is left to the silence, as before.
 */
export function heardAfterStall(e: Evidence, stalledMs: number, nowMs: number): number {
  const moved = Math.min(nowMs, e.lastHeardMs + stalledMs)
  const { disconnectedAtMs: closed, refusedAtMs: refused } = e
  if (closed === undefined || refused === undefined) return moved
  if (closed >= e.lastHeardMs && refused >= closed) return Math.min(moved, closed)
  return moved
}

/**
 * How often a connected member is probed (and so heard): every heartbeatMs, and at least twice
 * within suspectAfterMs, so that one late probe never makes a live member suspect.
 */
export function probeEveryMs(t: Timings): number {
  return Math.max(10, Math.min(t.heartbeatMs, Math.floor(t.suspectAfterMs / 2)))
}

/**
 * Flap damping: a member must have been alive without a break for this long before its
 * arrival triggers anything in PostgreSQL (a subscription is created).
 */
export function stableAfterMs(t: Timings): number {
  return Math.max(3 * Math.min(t.heartbeatMs, 200), 500)
}

/**
 * Connected to nobody (or no member heard) for this long: the node is isolated from the mesh.
 * Well past deadAfterMs, so that one member's restart is not mistaken for it.
 */
export function isolatedAfterMs(t: Timings): number {
  return Math.max(5000, Math.round(2.5 * t.deadAfterMs))
}

/**
 * How often the membership re-judges its members and considers a heartbeat: at most every
 * 250 ms, which is the liveness probe's tick at the default 500 ms heartbeat — on the beat, the
 * two wake the process together (200 ms woke it four more times a second).
 */
export function evaluateEveryMs(t: Timings): number {
  return Math.min(t.heartbeatMs, 250)
}

/**
 * A mesh of `members` judges the silence of its members more patiently as it grows
 * (patience.ts: its probes come as much more slowly): with many members on few cores a
 * probe answered late is the machine's load, and every "dead" said is flooded to all. A closed
 * connection or a refused dial is judged as before (a killed member).
 */
export function silenceTimings(t: Timings, members: number): Timings {
  const f = patience(members)
  if (f === 1) return t
  return { ...t, suspectAfterMs: t.suspectAfterMs * f, deadAfterMs: t.deadAfterMs * f }
}
