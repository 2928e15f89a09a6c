// A member's record as the membership judges it (membership.ts): this node's own, whether a
// record is news, the digest of it that the liveness probe carries, and which records claim
// one nodeId. Pure, so each is unit-tested alone.
import type { Logger } from '../log.js'
import type { MembershipHeartbeat as Heartbeat } from '../mesh/codec.js'
import type { MemberState } from './detector.js'
import type { MembershipInit, SelfView } from './membership.js'

/** The record goes out at least this often, changed or not (a member heard only by relay). */
export const RECORD_REFRESH_MS = 300_000

/**
 * What of a record a peer must learn when it changes, as a digest of 1-127 (0: none) that the
 * liveness probe carries (liveness.ts). A collision (1 in 127 per change) leaves a change to the
 * record's periodic refresh.
 */
export function recordDigest(
  hb: Pick<
    Heartbeat,
    | 'nodeId'
    | 'postgres'
    | 'version'
    | 'incarnation'
    | 'state'
    | 'joinPercent'
    | 'replicasetVersion'
    | 'rosterVersion'
    | 'postgresUp'
    | 'commit'
  >,
): number {
  const text = JSON.stringify([
    hb.nodeId,
    hb.postgres,
    hb.version,
    hb.incarnation,
    hb.state,
    hb.joinPercent ?? null,
    hb.replicasetVersion,
    hb.rosterVersion ?? 0,
    hb.postgresUp ?? true,
    hb.commit?.mode ?? null,
    hb.commit?.quorum ?? null,
    hb.commit?.changed ?? null,
  ])
  let h = 0
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0
  return ((h >>> 0) % 127) + 1
}

/**
 * Not newer than what was taken from that sender: no later in the same run, or from an older
 * run while the newer one is alive (a run started after a dead one is taken whatever its
 * incarnation: the clock of a restarted host may have gone back).
 */
export function stale(
  hb: Pick<Heartbeat, 'incarnation' | 'sentAt' | 'seq'>,
  last: { incarnation: number; sentAt: number; seq: number | undefined; state: MemberState },
): boolean {
  if (hb.incarnation !== last.incarnation)
    return hb.incarnation < last.incarnation && last.state !== 'dead'
  if (hb.seq !== undefined && last.seq !== undefined) return hb.seq <= last.seq
  return hb.sentAt <= last.sentAt
}

/** This node's record without its number (membership.ts numbers it). */
export function ownRecord(
  init: Pick<MembershipInit, 'mesh' | 'nodeId' | 'postgres' | 'version'>,
  self: SelfView,
  incarnation: number,
): Omit<Heartbeat, 'sentAt' | 'seq'> {
  const { mesh, nodeId, postgres, version } = init
  return {
    v: 1,
    kind: 'heartbeat',
    nodeId,
    peerId: mesh.peerId,
    postgres,
    version,
    incarnation,
    state: self.joinState,
    ...(self.joinPercent === undefined ? {} : { joinPercent: self.joinPercent }),
    replicasetVersion: self.replicasetVersion,
    rosterVersion: self.rosterVersion,
    postgresUp: self.postgresUp,
    ...(self.commit ? { commit: self.commit } : {}),
    addrs: mesh.addresses().slice(0, 16),
  }
}

/**
 * Marks every live record whose nodeId another live record (or this node) claims too: both
 * duplicate, loudly (one error line when a record becomes one), neither used.
 */
export function markDuplicates(
  records: Iterable<{ nodeId: number; peerId: string; state: MemberState; duplicate: boolean }>,
  selfNodeId: number,
  log: Logger,
): void {
  const all = [...records]
  const live = new Map<number, typeof all>()
  for (const r of all) {
    if (r.state !== 'dead') live.set(r.nodeId, [...(live.get(r.nodeId) ?? []), r])
  }
  for (const r of all) {
    const claims = live.get(r.nodeId) ?? []
    const dup = r.state !== 'dead' && (claims.length > 1 || r.nodeId === selfNodeId)
    if (dup && !r.duplicate) {
      log.error(
        { node: r.nodeId, peers: claims.map((c) => c.peerId), self: r.nodeId === selfNodeId },
        'two arbiters claim one nodeId: neither is used until one of them stops',
      )
    }
    r.duplicate = dup
  }
}

/** A record a sparse mesh's hello passes on: held alive, not a duplicate, signed by its member. */
export function relayable<R extends { state: MemberState; duplicate: boolean; signed?: Heartbeat }>(
  r: R,
): r is R & { signed: Heartbeat } {
  return r.state === 'alive' && !r.duplicate && r.signed !== undefined
}

/** Held alive or suspect: a member a sparse mesh's ring is made of. */
export function live(r: { state: MemberState }): boolean {
  return r.state !== 'dead'
}
