// Every arbiter connected to every other (DESIGN §4: gossip in one hop), up to 16 members by
// default (past it the mesh is sparse, overlay.ts: DESIGN said ~64, measured too costly here).
// A new connection's hello (hello.ts) names the peers each side is connected to; each node
// also announces where it listens on an internal topic, at start and every 5 minutes. Whoever
// hears of a peer it is not connected to dials it. The Redialer keeps it that way.
import type { PeerId } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import { MAX_ANNOUNCED_ADDRS, MAX_HELLO_PEERS, type PeerAnnounce, WIRE_VERSION } from './codec.js'
import type { Gossip } from './gossip.js'
import type { PeerAddrs } from './hello.js'
import { knock } from './knock.js'
import { readKnownPeers, writeKnownPeers } from './known-peers.js'
import { connectedPeerIds, gossipRelays, type MeshNode, ownAddresses, peerIdIn } from './libp2p.js'
import { Redialer } from './redial.js'

/** the known peers are written this often (when they changed) */
const KEEP_INTERVAL_MS = 2000
/** unchanged addresses are announced again this often (a safety net: nobody asks for them) */
const ANNOUNCE_INTERVAL_MS = 300_000

export interface FullMeshComponents {
  node: MeshNode
  gossip: Gossip
  log: Logger
  counters: { dialFailures: number }
  isBlocked(peerId: string): boolean
  /** where the peers known at stop are kept for the next start (none: not kept) */
  knownPeersFile?: string | undefined
  /** past this many members the mesh is sparse (overlay.ts) */
  fullMeshUpTo?: number | undefined
  /** the members' peer ids, when a membership runs (only members make a ring) */
  members?: () => readonly string[] | undefined
  /** how many members have a record, dead ones too (overlay.ts) */
  memberCount?: () => number | undefined
  /** a full mesh probes every connection up to this many members (overlay.ts probeEdges) */
  probeAllUpTo?: number | undefined
  /** a knock at a closed connection's peer answered (the membership judges it again at once) */
  knocked?: (peerId: string) => void
}

/** gossipsub's event when a peer's subscriptions change */
export type SubscriptionChange = CustomEvent<{
  peerId: PeerId
  subscriptions: { topic: string; subscribe: boolean }[]
}>
type Identified = CustomEvent<{ peerId: PeerId; listenAddrs: Multiaddr[] }>

export class FullMesh {
  private readonly redial: Redialer
  private readonly self: string
  private timer: Beat | undefined
  private announcedAt = 0
  /** the known peers as last written to knownPeersFile */
  private kept = ''
  /** peers connected at some time in this run: only they are kept (a gone peer, one run) */
  private readonly reached = new Set<string>()
  /** the addresses last learned of each peer, as it said them */
  private readonly learned = new Map<string, string>()
  /** the peers gossipsub relays every message to (a sparse mesh: every connected peer) */
  private relaying = false
  /** peers whose port refused a knock after their last connection closed (knock.ts), and when */
  private readonly knocked = new Map<string, number>()
  /** peers whose port accepted a knock after their last connection closed, and when */
  private readonly listening = new Map<string, number>()
  /** peers whose port is being knocked at (a knock answers within a second) */
  private readonly knocks = new Set<string>()
  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    this.knocked.delete(id)
    this.listening.delete(id)
    this.reached.add(id)
    this.redial.addPeer(id)
    this.redial.connected(id)
    this.syncRelays()
  }
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    if (this.relaying) gossipRelays(this.components.node).delete(evt.detail.toString())
    this.knockAt(evt.detail.toString())
  }
  private readonly onIdentify = (evt: Identified): void => {
    this.redial.addPeer(evt.detail.peerId.toString(), evt.detail.listenAddrs)
  }

  constructor(
    private readonly components: FullMeshComponents,
    bootstrap: readonly Multiaddr[],
  ) {
    const { node, log, counters, isBlocked, fullMeshUpTo, probeAllUpTo, members, memberCount } =
      components
    this.self = node.peerId.toString()
    const ring = {
      ...(fullMeshUpTo === undefined ? {} : { fullMeshUpTo }),
      ...(members ? { members } : {}),
      ...(memberCount ? { memberCount } : {}),
      ...(probeAllUpTo === undefined ? {} : { probeAllUpTo }),
    }
    this.redial = new Redialer({ node, log, counters, isBlocked, ...ring }, bootstrap)
  }

  start(): void {
    const { node } = this.components
    node.addEventListener('peer:connect', this.onConnect)
    node.addEventListener('peer:disconnect', this.onDisconnect)
    node.addEventListener('peer:identify', this.onIdentify)
    this.rememberKnown()
    this.redial.start()
    this.announce()
    this.timer = onBeat(
      KEEP_INTERVAL_MS,
      () => {
        if (Date.now() - this.announcedAt >= ANNOUNCE_INTERVAL_MS) this.announce()
        this.keepKnown()
        this.syncRelays()
      },
      { unref: true },
    )
  }

  stop(): void {
    const { node } = this.components
    this.timer?.stop()
    this.keepKnown()
    this.redial.stop()
    node.removeEventListener('peer:connect', this.onConnect)
    node.removeEventListener('peer:disconnect', this.onDisconnect)
    node.removeEventListener('peer:identify', this.onIdentify)
  }

  /** Whether this peer's connection carries liveness probes (every one, up to probeAllUpTo). */
  probes(peerId: string): boolean {
    return this.redial.probed()?.has(peerId) ?? true
  }

  /** Whether some members are judged by rumor here: a sparse mesh, or one probing its ring only. */
  rumors(): boolean {
    return this.sparse() || this.redial.probed() !== undefined
  }

  /** Whether the mesh is sparse now (more members than a full mesh holds; overlay.ts). */
  sparse(): boolean {
    return this.redial.neighbours() !== undefined
  }

  /**
   * A sparse mesh floods gossip over its connections: gossipsub relays every message to its
   * "direct" peers, here every connected one (its own mesh of D peers would leave members
   * out). A full mesh publishes to every member itself, and relays to one (FULL_MESH_GOSSIP).
   */
  private syncRelays(): void {
    const direct = gossipRelays(this.components.node)
    const sparse = this.sparse()
    if (sparse) for (const id of connectedPeerIds(this.components.node)) direct.add(id)
    else if (this.relaying) direct.clear()
    this.relaying = sparse
  }

  /** A peer said where it listens: keep only its own addresses; dial it if not connected. */
  onAnnounce(from: string, a: PeerAnnounce): void {
    this.heard(from, a.addrs)
  }

  /**
   * A message from a peer carried its addresses (an announcement, a membership heartbeat,
   * either maybe relayed): keep them, and dial it now if not connected (a new node is heard
   * first through its heartbeat; waiting for the keep-connected loop cost a tick).
   */
  heard(from: string, addrs: readonly string[]): void {
    if (this.learn(from, addrs)) this.redial.dialNow(from)
  }

  /** The peers a hello named: as `heard`, with one look at the schedule for all of them. */
  heardAll(peers: ReadonlyArray<{ peerId: string; addrs: readonly string[] }>): void {
    const news = peers.filter((p) => this.learn(p.peerId, p.addrs)).map((p) => p.peerId)
    if (news.length > 0) this.redial.dialNow(news)
  }

  /**
   * Remember a peer's own addresses (an announcement, a member's record, a hello's list): the
   * redialer dials them, and so does an rpc request to a member not connected yet (rpc.ts).
   * Not written to libp2p's peer store: 4,000 writes made a 64-member start (each member
   * learns every other), a fifth of its CPU. Returns true if this node dials it (redial.ts dials)
   * and is not connected to it: a member off a sparse mesh's ring is not looked for.
   */
  learn(from: string, strings: readonly string[]): boolean {
    if (this.components.isBlocked(from)) return false
    // every record carries them: parsed when they change
    const said = strings.join(' ')
    if (this.learned.get(from) === said) return this.redial.dials(from) && !this.connected(from)
    const addrs: Multiaddr[] = []
    for (const s of strings) {
      try {
        const ma = multiaddr(s)
        if (peerIdIn(ma) === from) addrs.push(ma)
      } catch {
        // one bad address does not spoil the others
      }
    }
    if (addrs.length === 0) return false
    this.learned.set(from, said)
    this.redial.addPeer(from, addrs)
    return this.redial.dials(from) && !this.connected(from)
  }

  private connected(peerId: string): boolean {
    // not getConnections(peerIdFromString(id)): a base58 decode for each peer a hello names
    return this.components.node.getConnections().some((c) => c.remotePeer.toString() === peerId)
  }

  forget(peerId: string): void {
    this.learned.delete(peerId)
    this.knocked.delete(peerId)
    this.listening.delete(peerId)
    this.redial.forget(peerId)
    this.reached.delete(peerId)
    this.keepKnown()
  }

  /** The peers of the last run, dialed at start (a node that is only others' bootstrap). */
  private rememberKnown(): void {
    const { knownPeersFile: file, log } = this.components
    if (file === undefined) return
    try {
      const peers = readKnownPeers(file).filter((p) => p.peerId !== this.self)
      for (const p of peers)
        this.redial.remember(
          p.peerId,
          p.addrs.map((a) => multiaddr(a)),
        )
      if (peers.length > 0)
        log.info({ peers: peers.length, file }, 'dialing the peers of the last run')
    } catch (err) {
      log.warn({ file, err: (err as Error).message }, 'cannot read the peers of the last run')
    }
  }

  /** Write the known peers when they changed (every 2 s at most, and at stop). */
  private keepKnown(): void {
    const { knownPeersFile: file, log } = this.components
    if (file === undefined) return
    const peers = this.redial.known().filter((p) => this.reached.has(p.peerId))
    const now = JSON.stringify(peers)
    if (now === this.kept) return
    try {
      writeKnownPeers(file, peers)
      this.kept = now
    } catch (err) {
      log.warn({ file, err: (err as Error).message }, 'cannot keep the known peers')
    }
  }

  /** The peers this node is connected to, with their addresses, but `to` (for a hello). */
  connectedPeers(to: string): PeerAddrs[] {
    const connected = new Set(connectedPeerIds(this.components.node))
    return this.redial
      .known()
      .filter((p) => p.peerId !== to && connected.has(p.peerId))
      .slice(0, MAX_HELLO_PEERS)
      .map((p) => ({ peerId: p.peerId, addrs: p.addrs.slice(0, MAX_ANNOUNCED_ADDRS) }))
  }

  /** Bootstrap addresses that are not this node's own. */
  bootstrapElsewhere(): string[] {
    return this.redial.bootstrapElsewhere()
  }

  /** An inbound connection from this peer would be a second one (redial.ts). */
  yieldsTo(peerId: string): boolean {
    return this.redial.yieldsTo(peerId)
  }

  /** Where a known peer listens (its addresses with its /p2p/ id), if it is known where. */
  addrsOf(peerId: string): Multiaddr[] | undefined {
    return this.redial.addrsOf(peerId)
  }

  /** Whether a knock at this peer's port is still out (its connection just closed). */
  knocking(peerId: string): boolean {
    return this.knocks.has(peerId)
  }

  /** When a knock found this peer's port open after its last connection closed (it runs). */
  listeningAt(peerId: string): number | undefined {
    return this.listening.get(peerId)
  }

  /** When a dial or a knock of this peer was last refused, since it last connected. */
  refusedAt(peerId: string): number | undefined {
    const dialed = this.redial.refusedAt(peerId)
    const knocked = this.knocked.get(peerId)
    return dialed === undefined ? knocked : Math.max(dialed, knocked ?? 0)
  }

  /**
   * A peer's last connection closed: whether its port still listens is asked at once (a killed
   * arbiter's refuses), on both ends — the end that waits for the other's redial (crossing.ts)
   * would learn it only when that wait is over.
   */
  private knockAt(peerId: string): void {
    const addrs = this.redial.addrsOf(peerId)?.map(String)
    if (addrs === undefined || this.components.isBlocked(peerId)) return
    this.knocks.add(peerId)
    void knock(addrs).then((r) => {
      this.knocks.delete(peerId)
      if (connectedPeerIds(this.components.node).includes(peerId)) return
      if (r === 'refused') this.knocked.set(peerId, Date.now())
      else if (r === 'open') this.listening.set(peerId, Date.now())
      this.components.knocked?.(peerId)
    })
  }

  dialFailedAt(peerId: string): number | undefined {
    return this.redial.failedAt(peerId)
  }

  lastDialError(): string | undefined {
    return this.redial.lastDialError()
  }

  /** Redials every known peer now (after a partition heals). */
  dialAll(): void {
    this.redial.dialNow()
  }

  private announce(): void {
    const { node, gossip, log } = this.components
    this.announcedAt = Date.now()
    const addrs = ownAddresses(node).slice(0, MAX_ANNOUNCED_ADDRS)
    const payload: PeerAnnounce = { v: WIRE_VERSION, kind: 'peers', peerId: this.self, addrs }
    gossip.publish('peers', payload).catch((err: unknown) => {
      log.debug({ err: (err as Error).message }, 'peer announcement not sent')
    })
  }
}

/**
 * Tells `on` of every connection, disconnection, and subscription to the membership topic (a
 * peer gossip reaches from now on); returns the function that stops it.
 */
export function watchPeers(
  node: MeshNode,
  membershipTopic: string,
  on: (peer: PeerId, event: 'connect' | 'disconnect' | 'subscribed') => void,
): () => void {
  const onConnect = (evt: CustomEvent<PeerId>): void => on(evt.detail, 'connect')
  const onDisconnect = (evt: CustomEvent<PeerId>): void => on(evt.detail, 'disconnect')
  const onSubscription = (evt: SubscriptionChange): void => {
    const { peerId, subscriptions } = evt.detail
    if (subscriptions.some((s) => s.subscribe && s.topic === membershipTopic))
      on(peerId, 'subscribed')
  }
  node.addEventListener('peer:connect', onConnect)
  node.addEventListener('peer:disconnect', onDisconnect)
  node.services.pubsub.addEventListener('subscription-change', onSubscription)
  return () => {
    node.removeEventListener('peer:connect', onConnect)
    node.removeEventListener('peer:disconnect', onDisconnect)
    node.services.pubsub.removeEventListener('subscription-change', onSubscription)
  }
}
