// The libp2p node's configuration, in one place: what runs on the wire is decided here, and
// the node the mesh's config describes (identity, private-network key, addresses) is made here.
import '../compat.js'
import { type GossipSub, gossipsub } from '@libp2p/gossipsub'
import { type Identify, identify } from '@libp2p/identify'
import type { Connection, IdentifyResult, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import { PendingByHost, Upgrading } from './inbound.js'
import { keepSigningKey, loadOrCreateIdentity, readPsk } from './keys.js'
import { noiseCrypto } from './noise-crypto.js'
import { skipKnownProtocolMerges } from './peer-store-fix.js'
import { libp2pLogger } from './quiet-logger.js'
import { fixXsalsa20 } from './xsalsa20-fix.js'
import { fixYamuxWindowUpdates } from './yamux-window-fix.js'

export interface Services extends Record<string, unknown> {
  identify: Identify
  pubsub: GossipSub
}

export type MeshNode = Libp2p<Services>

/**
 * An inbound connection must finish its handshake (pnet nonce, Noise, muxer) within this long:
 * a peer does it in milliseconds, a silent socket held a pending slot for libp2p's 10 s.
 */
export const INBOUND_UPGRADE_TIMEOUT_MS = 3000
/** Pending inbound connections in all; one host may hold MAX_PENDING_PER_HOST (inbound.ts). */
export const MAX_PENDING_INBOUND = 256
/** New inbound connections per second from one host (libp2p's default, 5, is for the Internet). */
export const INBOUND_PER_HOST_PER_SECOND = 100

export interface NodeInit {
  privateKey: PrivateKey
  listen: readonly Multiaddr[]
  /** pnet's swarm.key bytes; undefined only in insecure mode */
  psk: Uint8Array | undefined
  /** the connection gater denies these peers (the test-only partition switch) */
  isBlocked(peerId: PeerId): boolean
  /**
   * An inbound connection from this peer, its handshake done, would be a second one: this
   * node is dialing the peer itself and its dial is the one kept (redial.ts `yieldsTo`)
   */
  isSecond?(peerId: PeerId): boolean
  /** gossipsub's mesh and gossip parameters, over FULL_MESH_GOSSIP (the mesh benchmark) */
  gossipTuning?: GossipTuning
}

/**
 * gossipsub for a full mesh (every member connected to every other, publishing to all of them
 * directly): no IHAVE gossip (Dlazy 0, gossipFactor 0: every message id, several times a
 * second, to peers that had the message already) and one relay per message instead of six.
 * Measured with the mesh benchmark, 16 nodes: idle traffic per node 188 → 91 KiB/s at the
 * old 200 ms heartbeat, and with the 500 ms one (bench/README.md).
 */
export const FULL_MESH_GOSSIP: GossipTuning = {
  D: 1,
  Dlo: 1,
  Dhi: 2,
  Dout: 0,
  Dlazy: 0,
  gossipFactor: 0,
}

/** The gossipsub parameters a full mesh of arbiters may tune. */
export interface GossipTuning {
  D?: number
  Dlo?: number
  Dhi?: number
  Dout?: number
  Dlazy?: number
  gossipFactor?: number
  heartbeatInterval?: number
}

/** What the mesh's config says of its libp2p node. */
export interface MeshNodeConfig {
  listen: readonly string[]
  bootstrap: readonly string[]
  identityFile: string
  pskFile?: string
  insecure: boolean
  gossipTuning?: GossipTuning
}

/**
 * The node the config describes, not yet started: its identity and private-network key read
 * (made on first use), its addresses parsed (a bad one named). Also the bootstrap addresses.
 */
export async function openMeshNode(
  config: MeshNodeConfig,
  log: Logger,
  gate: Pick<NodeInit, 'isBlocked' | 'isSecond'>,
): Promise<{ node: MeshNode; bootstrap: Multiaddr[]; privateKey: PrivateKey }> {
  if (config.pskFile === undefined && !config.insecure) {
    throw new TraktorError(
      'ERR_MESH_PSK',
      'mesh mode needs a private-network key (mesh.pskFile); set mesh.insecure to run without one',
    )
  }
  const listen = parseAddrs(config.listen, 'listen')
  const bootstrap = parseAddrs(config.bootstrap, 'bootstrap')
  const privateKey = await loadOrCreateIdentity(config.identityFile)
  const psk = config.pskFile === undefined ? undefined : await readPsk(config.pskFile)
  if (psk === undefined) log.warn('mesh runs WITHOUT a private-network key (insecure: true)')
  const node = await createMeshNode({
    privateKey,
    listen,
    psk,
    ...gate,
    ...(config.gossipTuning ? { gossipTuning: config.gossipTuning } : {}),
  })
  return { node, bootstrap, privateKey }
}

/** A configured node, not yet started. */
export async function createMeshNode(init: NodeInit): Promise<MeshNode> {
  const { isBlocked, isSecond, psk } = init
  if (psk !== undefined) fixXsalsa20()
  fixYamuxWindowUpdates()
  keepSigningKey(init.privateKey)
  const pending = new PendingByHost()
  const upgrading = new Upgrading(INBOUND_UPGRADE_TIMEOUT_MS)
  const node = await createLibp2p<Services>({
    start: false,
    ...libp2pLogger(),
    privateKey: init.privateKey,
    addresses: { listen: init.listen.map(String) },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux()],
    ...(psk === undefined ? {} : { connectionProtector: preSharedKey({ psk }) }),
    connectionGater: {
      denyDialPeer: isBlocked,
      denyInboundConnection: (maConn) => pending.deny(maConn),
      denyInboundEncryptedConnection: (peerId, maConn) => {
        pending.done(maConn)
        if (isBlocked(peerId) || isSecond?.(peerId) === true) return true
        upgrading.add(peerId.toString(), maConn)
        return false
      },
      denyOutboundEncryptedConnection: isBlocked,
    },
    // replaced by Liveness (liveness.ts): one probe stream per connection, stall-tolerant
    connectionMonitor: { enabled: false },
    connectionManager: {
      // `traktor demo` and the tests run several arbiters on one host
      inboundConnectionThreshold: INBOUND_PER_HOST_PER_SECOND,
      maxIncomingPendingConnections: MAX_PENDING_INBOUND,
      inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS,
    },
    services: {
      // not run on every new connection: a traktor peer's first hello says what identify would
      // (hello.ts, `identified` below); run only to tell an older arbiter (hello.ts olderArbiter)
      identify: identify({ runOnConnectionOpen: false }),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // gossipsub's sybil defence scores peers down when more than 10 share an IP address;
        // members of a private network are trusted, and several arbiters behind one address
        // (one host in `traktor demo` and the tests, a NAT) must not lose their gossip mesh
        scoreParams: { IPColocationFactorWeight: 0 },
        // In a full mesh every message also arrives relayed, several times. Without this,
        // gossipsub checks each copy's signature before noticing it is a duplicate, and
        // signature checks become most of the CPU (measured: 24 nodes, 9 of 43 s). The id
        // is known only once a copy has passed the signature check, so a forged copy with a
        // stolen id cannot shadow the real one.
        fastMsgIdFn: fastMessageId,
        ...FULL_MESH_GOSSIP,
        ...init.gossipTuning,
      }),
    },
  })
  skipKnownProtocolMerges(node.peerStore)
  upgradingOf.set(node, upgrading)
  return node
}

const upgradingOf = new WeakMap<Libp2p, Upgrading>()

/**
 * A traktor peer said hello on this connection: libp2p is told what identify would have found
 * (identify does not run on a new connection, see createMeshNode) — that it speaks this node's
 * protocols, and where it listens — so that gossipsub opens its streams to it (the registrar's
 * topologies wait for this event) and the full mesh learns its addresses. identify on every
 * connection, both ways, was about a third of a connection's CPU (a stream each way, a peer
 * record signed, checked and written to the peer store: 13 of ~40 ms in a loop of connections
 * between two nodes), the most of a mesh's start. Once per connection.
 */
export function identified(node: Libp2p, connection: Connection, listenAddrs: Multiaddr[]): void {
  const events = (node as unknown as { components?: { events?: EventTarget } }).components?.events
  if (!(events instanceof EventTarget)) throw new Error('this libp2p has no event bus to tell')
  const detail: IdentifyResult = {
    peerId: connection.remotePeer,
    listenAddrs,
    protocols: node.getProtocols(),
    connection,
  }
  events.dispatchEvent(new CustomEvent('peer:identify', { detail }))
}

/** Whether an inbound connection from this peer is being set up (inbound.ts `Upgrading`). */
export function upgradingFrom(node: Libp2p, peerId: string): boolean {
  return upgradingOf.get(node)?.has(peerId) === true
}

function fastMessageId(msg: { from?: Uint8Array; seqno?: Uint8Array }): string {
  const hex = (b: Uint8Array | undefined): string =>
    b === undefined ? '' : Buffer.from(b).toString('hex')
  return `${hex(msg.from)}:${hex(msg.seqno)}`
}

/** A node's own addresses are worked out again after this long (or when libp2p says they changed). */
const OWN_ADDRESSES_TTL_MS = 1000
const ownAddressCache = new WeakMap<MeshNode, { at: number; addrs: string[] }>()
const watchedForAddresses = new WeakSet<MeshNode>()

/**
 * The node's listen addresses, each ending in /p2p/<its id>. Asked for by every liveness probe
 * (the digest of this node's record) and every hello; working them out (multiaddr parsing and
 * printing) was 2 % of a 16-node mesh's start, so they are kept for a second.
 */
export function ownAddresses(node: MeshNode): string[] {
  if (!watchedForAddresses.has(node)) {
    watchedForAddresses.add(node)
    node.addEventListener('self:peer:update', () => ownAddressCache.delete(node))
  }
  const now = performance.now()
  const kept = ownAddressCache.get(node)
  if (kept !== undefined && now - kept.at < OWN_ADDRESSES_TTL_MS) return kept.addrs
  const self = node.peerId.toString()
  const addrs = node.getMultiaddrs().map((a) => {
    const hasId = a.getComponents().some((c) => c.name === 'p2p')
    return (hasId ? a : a.encapsulate(`/p2p/${self}`)).toString()
  })
  // an empty list (not listening yet) is not kept
  if (addrs.length > 0) ownAddressCache.set(node, { at: now, addrs })
  return addrs
}

/**
 * The ids of the peers this node is connected to. libp2p's getPeers() rebuilds every peer id
 * from its string (a base58 decode each); this reads the connections' own: on a 16-node
 * mesh's start getPeers was 3 % of the CPU.
 */
export function connectedPeerIds(node: Libp2p): string[] {
  const ids = new Set<string>()
  for (const c of node.getConnections()) ids.add(c.remotePeer.toString())
  return [...ids]
}

/** Parses configured addresses; a bad one is named in the error. */
export function parseAddrs(addrs: readonly string[], key: string): Multiaddr[] {
  return addrs.map((a) => {
    try {
      return multiaddr(a)
    } catch (err) {
      throw new TraktorError(
        'ERR_MESH_ADDR',
        `mesh.${key}: ${JSON.stringify(a)} is not a multiaddr`,
        {
          cause: err,
        },
      )
    }
  })
}

/** Stops a node; a failure to stop is logged, not thrown. */
export async function stopQuietly(node: MeshNode, log?: Logger): Promise<void> {
  try {
    await node.stop()
  } catch (err) {
    log?.warn({ err }, 'libp2p did not stop cleanly')
  }
}

/**
 * gossipsub's "direct" peers, to whom it relays every message (a sparse mesh floods through
 * them; full-mesh.ts). The class has the set; the interface the package exports does not.
 */
export function gossipRelays(node: MeshNode): Set<string> {
  const direct = (node.services.pubsub as unknown as { direct?: unknown }).direct
  if (!(direct instanceof Set)) throw new Error('this gossipsub keeps no set of direct peers')
  return direct as Set<string>
}

/** `addr`'s /p2p/ id, if it has one. */
export function peerIdIn(addr: Multiaddr): string | undefined {
  return addr.getComponents().findLast((c) => c.name === 'p2p')?.value
}

/** `addr` without its /p2p/ id. */
export function withoutPeerId(addr: Multiaddr): Multiaddr {
  const id = peerIdIn(addr)
  return id === undefined ? addr : addr.decapsulate(`/p2p/${id}`)
}
