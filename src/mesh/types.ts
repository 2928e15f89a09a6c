// The mesh's contract with the rest of the arbiter. src/mesh is the only module that imports
// libp2p; everything else sees peer ids as strings and payloads as plain JSON values.

/** Gossip topics, each versioned and per cluster on the wire: /traktor/<cluster>/<name>/1 */
export type TopicName = 'membership' | 'conflicts'

export interface GossipMessage {
  /** the signed publisher (libp2p peer id, "12D3KooW...") — never the relaying peer */
  from: string
  topic: TopicName
  /** the decoded payload, already checked against the topic's schema */
  payload: unknown
}

/**
 * Extra acceptance check the cluster layer installs per topic, e.g. "the nodeId in the payload
 * is the one this peer id announced". Must be fast and must not throw; false = Reject.
 */
export type ClaimCheck = (from: string, payload: unknown) => boolean

/** One request/response on /traktor/rpc/1.0.0. */
export interface RpcRequest {
  method: string
  params: unknown
}

export type RpcResponse =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string } }

export type RpcHandler = (from: string, req: RpcRequest) => Promise<RpcResponse>

export interface MeshCounters {
  /** gossip messages accepted / published / rejected, per topic */
  gossipIn: Record<TopicName, number>
  gossipOut: Record<TopicName, number>
  gossipRejected: Record<TopicName, number>
  rpcIn: number
  rpcOut: number
  rpcErrors: number
  /** dials of the keep-connected loops that failed (a dead peer, another swarm key, ...) */
  dialFailures: number
}

export function zeroCounters(): MeshCounters {
  const byTopic = (): Record<TopicName, number> => ({ membership: 0, conflicts: 0 })
  const z = { rpcIn: 0, rpcOut: 0, rpcErrors: 0, dialFailures: 0 }
  return { gossipIn: byTopic(), gossipOut: byTopic(), gossipRejected: byTopic(), ...z }
}

/** Whether this node reaches the mesh; `reason` says why not, in an operator's words. */
export interface MeshIsolation {
  isolated: boolean
  /** when it became isolated, ms since the epoch */
  since?: number
  reason?: string
  /** the last failed dial: its target and error */
  lastDialError?: string
}

/** Asked of the membership by the liveness probe (liveness.ts). */
export interface RecordRequests {
  /** ask this peer for its record (unknown, held dead, or its digest says it changed) */
  wants(peerId: string): boolean
  /**
   * this node's record as it would gossip it now (sent straight to a peer that asks: `fresh`,
   * numbered anew), or as it last went out (a new connection's hello; unchanged, not re-signed)
   */
  record(fresh: boolean): object | undefined
  /** a 7-bit digest of this node's current record, carried by every probe and answer */
  digest(): number
  /** a peer's probe said this digest of its current record */
  heardDigest(peerId: string, digest: number): void
  /**
   * The other members' records as their members signed them, for a sparse mesh's hellos
   * (overlay.ts): those held alive only (a record passed on says "alive" to its receiver)
   */
  relayable?(): object[]
  /** the peer ids of every member held alive here (a sparse mesh's ring, overlay.ts) */
  memberPeerIds?(): string[]
  /** how many members have a record here, dead ones too (whether the mesh is sparse) */
  memberCount?(): number
  /** whether this peer's record is held here (any state) */
  known?(peerId: string): boolean
}

/** a connection made or closed, a peer subscribed to membership, a closed one's knock answered */
export type PeerEvent = 'connect' | 'disconnect' | 'subscribed' | 'knocked'
