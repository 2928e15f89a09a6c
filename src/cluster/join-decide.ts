// Whether a node that may become ready copies the cluster's data first, joins without a copy,
// or refuses (issue 12). Pure, so that every case is a unit test (test/unit/join-decide.test.ts).
import type { JoinMode } from '../config/types.js'
import type { JoinMarker } from '../postgres/join-copy.js'

export interface JoinFacts {
  mode: JoinMode
  marker: JoinMarker | undefined
  /** subscriptions this node has (a member from before the marker existed has some) */
  subscriptions: number
  /** live ready members (none: this node founds the cluster, unless it heard one before) */
  readyPeers: number
  /** ready members heard, live or dead (not removed): the cluster exists */
  readyHeard?: number
  /** replicated tables (none: there is nothing to copy) */
  tables: number
  /** replicated tables here that hold rows */
  occupied: ReadonlyArray<{ table: string; rows: number }>
}

export type JoinDecision =
  | { kind: 'ready'; why: string }
  | { kind: 'copy'; why: string }
  | { kind: 'refuse'; error: string }
  | { kind: 'wait'; why: string }

/** What a node that may become ready does: pure, so every case is a unit test. */
export function decideJoin(f: JoinFacts): JoinDecision {
  if (f.marker?.state === 'done') return { kind: 'ready', why: 'a member before' }
  if (f.marker?.state === 'copying') return { kind: 'copy', why: 'an interrupted copy starts over' }
  if (f.readyPeers === 0) {
    // its ready members all seen dead a moment (a dropped connection on a busy host: CI saw a
    // node 6 found a cluster of its own, ready and empty, 0.8 s after losing its bootstrap)
    if ((f.readyHeard ?? 0) > 0 && f.subscriptions === 0)
      return { kind: 'wait', why: 'no ready member is alive now: waiting for one to copy from' }
    return { kind: 'ready', why: 'founding the cluster' }
  }
  if (f.tables === 0) return { kind: 'ready', why: 'no replicated table to copy' }
  if (f.subscriptions > 0) return { kind: 'ready', why: 'a member before' }
  if (f.mode === 'no-copy') return { kind: 'ready', why: 'join = "no-copy"' }
  if (f.occupied.length > 0 && f.mode === 'empty-only') {
    const list = f.occupied.map((o) => `${o.table} holds ${o.rows} rows`).join(', ')
    return {
      kind: 'refuse',
      error: `cannot join with the cluster's data: ${list}; empty the tables, or set join to "copy" (they are replaced by a member's) or "no-copy" (they are kept, the cluster's rows are not copied)`,
    }
  }
  return { kind: 'copy', why: f.occupied.length > 0 ? 'join = "copy"' : 'empty tables' }
}

/** A node as the join sees it: its id, join state, and whether its PostgreSQL is up. */
export interface JoinPeer {
  nodeId: number
  joinState: string
  postgresUp: boolean
}

/**
 * What a member answers a joining node that asks for its view (members.list): itself and every
 * live node it hears, removed and doubly claimed nodes left out. The joining node may not have
 * heard them all yet (it learns of the others through the donor's relays).
 */
export function memberView(
  self: JoinPeer,
  members: ReadonlyArray<JoinPeer & { state: string; duplicate: boolean }>,
  removed: ReadonlySet<number>,
): JoinPeer[] {
  const live = members.filter(
    (m) => m.state !== 'dead' && !m.duplicate && !removed.has(m.nodeId) && m.nodeId !== self.nodeId,
  )
  return [self, ...live].map(({ nodeId, joinState, postgresUp }) => ({
    nodeId,
    joinState,
    postgresUp,
  }))
}

/** A ready member with its PostgreSQL up: its writes must reach this node from the copy on. */
export const mustJoin = (m: JoinPeer): boolean => m.joinState === 'ready' && m.postgresUp

/** The other nodes copying now: a copy waits for them (one copy at a time). */
export function copyingNow(peers: readonly JoinPeer[]): number[] {
  return peers.filter((p) => p.joinState === 'copying').map((p) => p.nodeId)
}

/**
 * Ready members (PostgreSQL up) that are not among the members the copy works with: at the
 * start, members not settled yet (just seen, flapping), which the copy waits for; at the end,
 * members that became ready meanwhile, which make the copy start over.
 */
export function leftOut(
  peers: readonly JoinPeer[],
  members: readonly { nodeId: number }[],
): number[] {
  return peers
    .filter((p) => mustJoin(p) && !members.some((m) => m.nodeId === p.nodeId))
    .map((p) => p.nodeId)
}
