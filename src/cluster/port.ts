// What the cluster layer needs from the mesh (src/mesh's Mesh provides it): named here so
// cluster code depends on a narrow interface, not on libp2p.
import type {
  ClaimCheck,
  GossipMessage,
  MeshIsolation,
  PeerEvent,
  RecordRequests,
  RpcHandler,
  RpcRequest,
  RpcResponse,
  TopicName,
} from '../mesh/types.js'

export type { PeerEvent }

export interface MeshPort {
  readonly peerId: string
  addresses(): string[]
  publish(topic: TopicName, payload: object): Promise<void>
  /** returns the disposer that takes the handler off again */
  subscribe(topic: TopicName, handler: (m: GossipMessage) => void): () => void
  setClaimCheck(topic: TopicName, check: ClaimCheck): void
  onPeer(handler: (peerId: string, event: PeerEvent) => void): () => void
  connectedPeers(): string[]
  /** whether the mesh is sparse: members not connected here are judged by rumor (rumors.ts) */
  sparse?(): boolean
  /** whether this peer has been heard on the liveness probe since it is probed here */
  met?(peerId: string): boolean
  /**
   * whether this peer's connection carries liveness probes: every one, except in a full mesh
   * past its probe-all size, which probes its ring's connections only (overlay.ts probeEdges)
   */
  probes?(peerId: string): boolean
  /** whether some members are judged by rumor here: a sparse mesh, or one probing its ring */
  rumors?(): boolean
  /** since when dials of this peer have been failing, for any reason */
  dialFailedAt?(peerId: string): number | undefined
  /** when a connected peer was last heard on the mesh's liveness probe (wall clock, ms) */
  answeredAt?(peerId: string): number | undefined
  /**
   * The liveness probe asks a peer for its record when `wants` says so; a peer that asks for
   * ours, and every new connection, gets `record()` straight (hello.ts); returns the disposer
   */
  recordRequests?(r: RecordRequests): () => void
  /** when a dial of this peer was last refused at every address: nothing listens there */
  refusedAt?(peerId: string): number | undefined
  /** when its port was found open after its connection closed: its process runs */
  listeningAt?(peerId: string): number | undefined
  /** whether its port is being knocked at (its connection just closed): taken as listening */
  knocking?(peerId: string): boolean
  /** whether this node reaches the mesh at all (a wrong swarm key, a dead bootstrap peer) */
  isolation(): MeshIsolation
  handle(handler: RpcHandler): void
  /** the bootstrap list names another node: a fresh node must not found a cluster alone */
  bootstrapsElsewhere?(): boolean
  /** stop redialing a peer that left the cluster */
  forgetPeer?(peerId: string): void
  request(
    peerId: string,
    req: RpcRequest,
    opts?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<RpcResponse>
}

/** One request to each of `members` at once; every answer (or error) with its member. */
export async function fanOut<M extends { peerId: string }>(
  mesh: Pick<MeshPort, 'request'>,
  members: readonly M[],
  req: RpcRequest,
  timeoutMs: number,
): Promise<Array<{ member: M; r: RpcResponse }>> {
  return await Promise.all(
    members.map(async (member) => ({
      member,
      r: await mesh.request(member.peerId, req, { timeoutMs }),
    })),
  )
}
