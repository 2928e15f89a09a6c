// A member's record as the membership judges it (membership.ts): whether a record is news,
// and the digest of it that the liveness probe carries. Pure, so both are unit-tested alone.
import type { MembershipHeartbeat as Heartbeat } from '../mesh/codec.js'
import type { MemberState } from './detector.js'

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
