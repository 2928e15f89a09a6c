// The arbiter's libp2p node: TCP + Noise + Yamux behind a private-network key, gossip topics,
// the RPC protocol, and the loops that keep every arbiter connected to every other.
import '../compat.js'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_RPC_BYTES,
  type MembershipHeartbeat,
  TOPIC_NAMES,
  type WireTopic,
} from './codec.js'
import { FullMesh, watchPeers } from './full-mesh.js'
import { Gossip, type Handler } from './gossip.js'
import { DEFAULT_ISOLATED_AFTER_MS, reach } from './isolation.js'
import { knownPeersFile } from './known-peers.js'
import {
  connectedPeerIds,
  type MeshNode,
  openMeshNode,
  ownAddresses,
  stopQuietly,
} from './libp2p.js'
import { Liveness } from './liveness.js'
import { type HelloExchange, meshHello } from './mesh-hello.js'
import type { MeshInit } from './mesh-init.js'
import { signRecord } from './record-sig.js'
import { type RequestOptions, RpcClient, RpcServer } from './rpc.js'
import type {
  ClaimCheck,
  GossipMessage,
  MeshCounters,
  MeshIsolation,
  PeerEvent,
  RecordRequests,
  RpcHandler,
  RpcRequest,
  RpcResponse,
  TopicName,
} from './types.js'
import { zeroCounters } from './types.js'

export type { MeshInit } from './mesh-init.js'
/** subscribed: the peer subscribed to the membership topic (gossip to it goes through now) */
export type PeerHandler = (peerId: string, event: PeerEvent) => void
export const DEFAULT_RPC_TIMEOUT_MS = 3000

interface Running {
  node: MeshNode
  gossip: Gossip
  fullMesh: FullMesh
  liveness: Liveness
  hello: HelloExchange
  rpc: RpcClient
  detach: () => void
  sign: Signer
}
type Signer = (r: MembershipHeartbeat) => Promise<MembershipHeartbeat>

type State =
  | { status: 'stopped' }
  | { status: 'starting'; done: Promise<void> }
  | { status: 'running'; run: Running }
  | { status: 'stopping'; done: Promise<void> }

export class Mesh {
  private state: State = { status: 'stopped' }
  private readonly log: Logger
  private readonly handlers = new Map<TopicName, Handler[]>()
  private readonly claimChecks = new Map<TopicName, ClaimCheck>()
  private readonly peerHandlers: PeerHandler[] = []
  private rpcHandler: RpcHandler | undefined
  private records: RecordRequests | undefined
  private readonly partitioned = new Set<string>()
  private readonly stats: MeshCounters = zeroCounters()
  private ownPeerId: string | undefined
  /** connected to no peer since then (the start counts); undefined while connected */
  private aloneSince: number | undefined

  constructor(private readonly init: MeshInit) {
    this.log = init.log.child({ component: 'mesh' })
  }

  /** This node's peer id; known from the first start on. */
  get peerId(): string {
    if (this.ownPeerId === undefined) {
      throw new TraktorError('ERR_MESH_NOT_STARTED', 'the mesh has not been started')
    }
    return this.ownPeerId
  }

  /** Where this node listens, each with its /p2p/ suffix; empty when not running. */
  addresses(): string[] {
    return this.state.status === 'running' ? ownAddresses(this.state.run.node) : []
  }

  async start(): Promise<void> {
    const s = this.state
    if (s.status === 'running') return
    if (s.status === 'starting') return s.done
    if (s.status === 'stopping') await s.done
    if (this.state.status !== 'stopped') return this.start()
    const done = this.doStart().then(
      (run) => {
        this.state = { status: 'running', run }
      },
      (err: unknown) => {
        this.state = { status: 'stopped' }
        throw err
      },
    )
    this.state = { status: 'starting', done }
    return done
  }

  async stop(): Promise<void> {
    const s = this.state
    if (s.status === 'stopped') return
    if (s.status === 'stopping') return s.done
    if (s.status === 'starting') {
      await s.done.catch(() => {})
      return this.stop()
    }
    const done = this.doStop(s.run).finally(() => {
      this.state = { status: 'stopped' }
    })
    this.state = { status: 'stopping', done }
    return done
  }

  /**
   * Sends a payload to every member; "nobody is subscribed yet" is not an error. A membership
   * record goes out signed (record-sig.ts: any peer may pass it on).
   */
  async publish(topic: TopicName, payload: object): Promise<void> {
    const run = this.running()
    const hb = topic === 'membership' && (payload as { kind?: string }).kind === 'heartbeat'
    await run.gossip.publish(topic, hb ? await run.sign(payload as MembershipHeartbeat) : payload)
  }

  /** Test-only: publishes bytes without any check, to forge messages. */
  async publishRaw(topic: WireTopic, bytes: Uint8Array): Promise<void> {
    await this.running().gossip.publishRaw(topic, bytes)
  }

  /** Returns the disposer that takes the handler off again. */
  subscribe(topic: TopicName, handler: (m: GossipMessage) => void): () => void {
    this.handlers.set(topic, [...(this.handlers.get(topic) ?? []), handler])
    return () => {
      const rest = (this.handlers.get(topic) ?? []).filter((h) => h !== handler)
      this.handlers.set(topic, rest)
    }
  }

  setClaimCheck(topic: TopicName, check: ClaimCheck): void {
    this.claimChecks.set(topic, check)
  }

  /** Returns the disposer that takes the handler off again. */
  onPeer(handler: PeerHandler): () => void {
    this.peerHandlers.push(handler)
    return () => {
      const i = this.peerHandlers.indexOf(handler)
      if (i >= 0) this.peerHandlers.splice(i, 1)
    }
  }

  /** Whether the bootstrap list names somewhere to go other than this node itself. */
  bootstrapsElsewhere(): boolean {
    return (this.live?.fullMesh.bootstrapElsewhere().length ?? 0) > 0
  }

  /** Whether this node reaches the mesh (see isolation.ts); never isolated when not running. */
  isolation(): MeshIsolation {
    if (this.state.status !== 'running') return { isolated: false }
    const { node, fullMesh } = this.state.run
    const now = Date.now()
    // events say when the last connection closed; this catches one missed in between
    if (node.getConnections().length > 0) this.aloneSince = undefined
    else this.aloneSince ??= now
    return reach({
      now,
      isolatedAfterMs: this.init.isolatedAfterMs ?? DEFAULT_ISOLATED_AFTER_MS,
      bootstrap: fullMesh.bootstrapElsewhere(),
      aloneSince: this.aloneSince,
      lastDialError: fullMesh.lastDialError(),
    })
  }

  // What the failure detector reads of the mesh (MeshPort; rumors.ts judgeMember):
  /** when a connected peer was last heard on the liveness probe (wall clock, ms) */
  answeredAt = (peerId: string): number | undefined => this.live?.liveness.answeredAt(peerId)
  /** when a dial of this peer was last refused at every address (its process is gone) */
  refusedAt = (peerId: string): number | undefined => this.live?.fullMesh.refusedAt(peerId)
  /** when a knock found this peer's port open after its connection closed (knock.ts) */
  listeningAt = (peerId: string): number | undefined => this.live?.fullMesh.listeningAt(peerId)
  /** whether a knock at this peer's port is still out (its connection just closed) */
  knocking = (peerId: string): boolean => this.live?.fullMesh.knocking(peerId) === true
  /** whether this peer has been heard on the liveness probe since it was probed here */
  met = (peerId: string): boolean => this.live?.liveness.met(peerId) === true
  /** when a dial of this peer last failed, for any reason (a sparse mesh's ring, overlay.ts) */
  dialFailedAt = (peerId: string): number | undefined => this.live?.fullMesh.dialFailedAt(peerId)
  /** whether the mesh is sparse (more members than a full mesh holds; overlay.ts) */
  sparse = (): boolean => this.live?.fullMesh.sparse() === true
  /** whether this peer's connection carries liveness probes (overlay.ts probeEdges) */
  probes = (peerId: string): boolean => this.live?.fullMesh.probes(peerId) !== false
  /** whether some members are judged by rumor here: sparse, or a full mesh probing its ring */
  rumors = (): boolean => this.live?.fullMesh.rumors() === true

  /** Open connections: one per connected peer, unless two dials crossed (redial.ts). */
  connectionCount(): number {
    return this.live?.node.getConnections().length ?? 0
  }

  connectedPeers(): string[] {
    return this.state.status === 'running' ? connectedPeerIds(this.state.run.node) : []
  }

  handle(handler: RpcHandler): void {
    this.rpcHandler = handler
  }

  /** Who to ask for a record, and what to do when asked (the membership); returns its disposer. */
  recordRequests(r: RecordRequests): () => void {
    this.records = r
    return () => {
      if (this.records === r) this.records = undefined
    }
  }

  /** Never throws, never hangs: failures come back as `{ok: false, error: {code: 'ERR_RPC_*'}}`. */
  async request(peerId: string, req: RpcRequest, opts?: RequestOptions): Promise<RpcResponse> {
    const run = this.live
    if (run !== undefined) return run.rpc.request(peerId, req, opts)
    this.stats.rpcOut++
    this.stats.rpcErrors++
    const error = { code: 'ERR_RPC_UNREACHABLE', message: 'the mesh is not running' }
    return { ok: false, error }
  }

  counters(): MeshCounters {
    return structuredClone(this.stats)
  }

  /** Stops redialing a peer that left the cluster (it is still accepted if it dials in). */
  forgetPeer(peerId: string): void {
    if (this.state.status === 'running') this.state.run.fullMesh.forget(peerId)
  }

  /**
   * TEST-ONLY partition switch: the connection gater denies these peers from now on and their
   * connections are closed. Not a membership tool: production code never calls it.
   */
  async partition(peerIds: readonly string[]): Promise<void> {
    for (const id of peerIds) this.partitioned.add(id)
    if (this.state.status !== 'running') return
    const { node } = this.state.run
    await Promise.all(peerIds.map((id) => node.hangUp(peerIdFromString(id)).catch(() => {})))
  }

  /** TEST-ONLY: undoes partition() and redials at once. */
  heal(): void {
    this.partitioned.clear()
    if (this.state.status === 'running') this.state.run.fullMesh.dialAll()
  }

  private get live(): Running | undefined {
    return this.state.status === 'running' ? this.state.run : undefined
  }

  private running(): Running {
    if (this.live) return this.live
    throw new TraktorError('ERR_MESH_NOT_STARTED', 'the mesh is not running')
  }

  private async doStart(): Promise<Running> {
    const { node, bootstrap, privateKey } = await openMeshNode(this.init, this.log, {
      isBlocked: (p) => this.partitioned.has(p.toString()),
      isSecond: (p) => this.live?.fullMesh.yieldsTo(p.toString()) === true,
    })
    try {
      await node.start()
      return await this.wire(node, bootstrap, (r) => signRecord(r, privateKey))
    } catch (err) {
      await stopQuietly(node)
      if (err instanceof TraktorError) throw err
      throw new TraktorError('ERR_MESH_START', `the mesh could not start: ${String(err)}`, {
        cause: err,
      })
    }
  }

  // Everything that needs a started node: topics, rpc, peer events, the keep-connected loops.
  private async wire(node: MeshNode, bootstrap: Multiaddr[], sign: Signer): Promise<Running> {
    const { init, log } = this
    const self = node.peerId.toString()
    this.ownPeerId = self
    const counters = this.stats
    const handler = () => this.rpcHandler
    const addrsOf = (peer: string) => fullMesh?.addrsOf(peer) // rpc dials where the mesh knows
    const rpcComponents = { node, log, counters, handler, addrsOf }
    const rpcInit = {
      maxFrameBytes: init.maxRpcBytes ?? DEFAULT_MAX_RPC_BYTES,
      defaultTimeoutMs: init.rpcTimeoutMs ?? DEFAULT_RPC_TIMEOUT_MS,
    }
    const server = new RpcServer(rpcComponents, rpcInit)
    await server.start()
    const rpc = new RpcClient(rpcComponents, rpcInit, server)
    let hello: HelloExchange | undefined
    let fullMesh: FullMesh | undefined
    const liveness = new Liveness(
      { node, log },
      {
        ...(init.probeEveryMs === undefined ? {} : { probeEveryMs: init.probeEveryMs }),
        wantsRecord: (peer) => this.records?.wants(peer) === true,
        onAsked: (peer) => hello?.asked(peer),
        digest: () => this.records?.digest() ?? 0,
        onDigest: (peer, d) => this.records?.heardDigest(peer, d),
        probes: (peer) => fullMesh?.probes(peer) ?? true,
      },
    )
    await liveness.start()
    const gossip = new Gossip(
      { pubsub: node.services.pubsub, log, counters, selfPeerId: self },
      {
        cluster: init.cluster,
        maxMessageBytes: init.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
        onAnnounce: (from, a) => fullMesh?.onAnnounce(from, a),
        // a member's record (gossiped, or in a hello): a sparse mesh passes it on (hello.ts)
        onAddrs: (from, addrs) => void fullMesh?.heard(from, addrs),
      },
      this.handlers,
      this.claimChecks,
    )
    fullMesh = new FullMesh(
      {
        node,
        gossip,
        log,
        counters,
        isBlocked: (id) => this.partitioned.has(id),
        knownPeersFile: knownPeersFile(this.init.identityFile),
        fullMeshUpTo: init.fullMeshUpTo,
        probeAllUpTo: init.probeAllUpTo,
        members: () => this.records?.memberPeerIds?.(),
        memberCount: () => this.records?.memberCount?.(),
        knocked: (id) => this.peerEvent(peerIdFromString(id), 'knocked'),
      },
      bootstrap,
    )
    hello = meshHello({ node, log }, { records: () => this.records, fullMesh, gossip, sign })
    await hello.start()
    this.aloneSince = Date.now()
    gossip.start()
    // before the membership's listeners: a closed connection's knock is out when it is judged
    fullMesh.start()
    const detach = watchPeers(node, gossip.topicString('membership'), (p, e) =>
      this.peerEvent(p, e),
    )
    log.info(
      {
        peerId: self,
        listen: ownAddresses(node),
        topics: TOPIC_NAMES,
        private: init.pskFile !== undefined,
      },
      'mesh started',
    )
    return { node, gossip, fullMesh, liveness, hello, rpc, detach, sign }
  }

  private async doStop(run: Running): Promise<void> {
    run.fullMesh.stop()
    run.liveness.stop()
    run.hello.stop()
    run.rpc.stop()
    run.gossip.stop()
    run.detach()
    await stopQuietly(run.node, this.log)
    this.log.info('mesh stopped')
  }

  private peerEvent(peer: PeerId, event: PeerEvent): void {
    const id = peer.toString()
    if (event === 'connect') this.aloneSince = undefined
    else if (this.live?.node.getConnections().length === 0) this.aloneSince = Date.now()
    if (event === 'connect' || event === 'disconnect')
      this.log.info({ peer: id }, event === 'connect' ? 'peer connected' : 'peer disconnected')
    for (const h of this.peerHandlers) {
      try {
        h(id, event)
      } catch (err) {
        this.log.error({ err, peer: id, event }, 'peer event handler failed')
      }
    }
  }
}
