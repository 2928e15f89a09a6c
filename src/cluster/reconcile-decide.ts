// The reconcile pass's decisions, pure (reconcile.ts observes and acts): which member's
// replicaset this node takes, whether a node still joining may arrive (or found the cluster),
// and which member to read a newer roster from.
import type { JoinState, Member } from './membership.js'

export interface PassObservation {
  self: number
  removed: ReadonlySet<number>
  joinState: JoinState
  /** why this node cannot join (a table that differs): it waits until that changes */
  joinError: string | undefined
  /** joinError came from a failed adopt (a member ahead whose replicaset failed our checks) */
  adoptFailed: boolean
  /** this node's replicaset version */
  version: number
  /** the other members, duplicates and removed nodes already left out */
  members: readonly Member[]
  /** this node was started with a bootstrap list naming another node */
  bootstrapsElsewhere: boolean
  /** the join grace period is over (a fresh node may found a cluster alone) */
  graceOver: boolean
}

export type PassVerdict =
  | { kind: 'removed' }
  | { kind: 'adopt'; from: Member }
  | { kind: 'arrive' }
  | { kind: 'wait'; why: string }
  | { kind: 'steady' }

export function decidePass(o: PassObservation): PassVerdict {
  if (o.removed.has(o.self)) return { kind: 'removed' }
  // the member with the newest replicaset, if it is ahead of ours
  const ahead = o.members
    .filter(
      (m) => m.state === 'alive' && m.joinState === 'ready' && m.replicasetVersion > o.version,
    )
    .sort((a, b) => b.replicasetVersion - a.replicasetVersion)[0]
  if (ahead) return { kind: 'adopt', from: ahead }
  if (o.joinState !== 'joining') return { kind: 'steady' }
  // an adopt's error stands while a member is ahead; with nobody ahead any more this node caught
  // up another way (an in-doubt commit learned from a peer) and must not stay joining for it
  if (o.joinError !== undefined && !o.adoptFailed) return { kind: 'wait', why: o.joinError }
  if (o.members.some((m) => m.state === 'alive' && m.joinState === 'ready'))
    return { kind: 'arrive' }
  // a ready member not heard for a moment (a busy host) is still the cluster: founding now
  // would make this node ready with an empty replicaset and without the cluster's data
  if (o.members.some((m) => m.state === 'suspect' && m.joinState === 'ready'))
    return { kind: 'wait', why: 'a ready member is suspect: waiting to hear it again' }
  // founding (ready with nobody ready to follow) only after a grace period, and not by a node
  // told to join others that has heard no member yet: on a slow start it would be ready for a
  // moment with its own (empty) replicaset, and members would wire to it
  if (!o.graceOver) return { kind: 'wait', why: 'no ready member heard yet (grace period)' }
  if (o.members.length === 0 && o.bootstrapsElsewhere)
    return { kind: 'wait', why: 'no member heard yet, and the bootstrap list names another node' }
  return { kind: 'arrive' }
}

/**
 * The member to read the roster from: the one that knows the newest roster, if newer than
 * ours; a node still joining asks a ready member even without a newer version (a node removed
 * while it was down must learn it before it subscribes to anyone).
 */
export function rosterSource(
  alive: readonly Member[],
  rosterVersion: number,
  joinState: JoinState,
): Member | undefined {
  const newer = alive
    .filter((m) => m.rosterVersion > rosterVersion)
    .sort((a, b) => b.rosterVersion - a.rosterVersion)[0]
  return newer ?? (joinState === 'joining' ? alive.find((m) => m.joinState === 'ready') : undefined)
}

/** Every other live node of the cluster, whatever its join state (not removed, not claimed twice). */
export function livePeers(
  members: readonly Member[],
  self: number,
  removed: ReadonlySet<number>,
): Member[] {
  return members.filter(
    (m) =>
      m.state !== 'dead' &&
      !m.duplicate &&
      m.joinState !== 'removed' &&
      m.nodeId !== self &&
      !removed.has(m.nodeId),
  )
}

/** The members a new node may copy from: ready, PostgreSQL up, not removed, stable. */
export function donors(
  members: readonly Member[],
  removed: ReadonlySet<number>,
  stable: (m: Member) => boolean,
): Member[] {
  return members.filter(
    (m) => m.joinState === 'ready' && m.postgresUp && !removed.has(m.nodeId) && stable(m),
  )
}
