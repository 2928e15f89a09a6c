// Keeps this node connected to its bootstrap addresses and to every peer it has ever known.
// libp2p 3 never auto-dials, and its reconnect queue gives up after a few tries; a member that
// is down for an hour must still be found again the second it comes back.
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import { type Backoff, due, failed, fresh, REDIAL_MIN_DELAY_MS } from './backoff.js'
import { DEFER_MS, deferMs, SECOND_DIAL_MS, YIELD_GRACE_MS, yields } from './crossing.js'
import { DialFailures, describeDialError, dialRefused, isSelfDial } from './isolation.js'
import { connectedPeerIds, peerIdIn, upgradingFrom, withoutPeerId } from './libp2p.js'
import {
  DEFAULT_FULL_MESH_UP_TO,
  DEFAULT_PROBE_ALL_UP_TO,
  probeEdges,
  ringNeighbours,
} from './overlay.js'
import { Settle } from './settle.js'

export { FULL_SETTLE_MAX_MS, FULL_SETTLE_MS, RING_SETTLE_MS } from './settle.js'

const TICK_MS = 250
const DIAL_TIMEOUT_MS = 5000
/**
 * Dials in flight at once. A node that learned 63 peers at once dialled them all together: on
 * two cores the handshakes queued past their timeouts (2,072 timed out in a 90 s run).
 */
export const MAX_DIALS_IN_FLIGHT = 8
/** the ring is worked out again at most this often (every hello asks whether it is sparse) */
const RING_EVERY_MS = 100
const MAX_ADDRS_PER_PEER = 32

/** A peer known by id: dialled at its known addresses, or by id (the peer store's). */
interface PeerTarget extends Backoff {
  peerId: string
  addrs: Map<string, Multiaddr>
  /** when the dial in flight began (monotonic ms) */
  dialAt: number
  /** when it was last heard of (monotonic ms): the peer's own dial is waited for (DEFER_MS) */
  heardAt: number
}

/** A bootstrap address without /p2p/: whoever answers there is the peer. */
interface AddrTarget extends Backoff {
  addr: Multiaddr
  peerId: string | undefined
}

export interface RedialComponents {
  node: Libp2p
  log: Logger
  /** counts the dials that failed */
  counters: { dialFailures: number }
  /** peers the (test-only) partition switch denies */
  isBlocked(peerId: string): boolean
  /** up to this many members, every known peer is dialed; past it, the ring's (overlay.ts) */
  fullMeshUpTo?: number
  /** the peer ids of the live members (the membership's records); none: every peer is dialed */
  members?: () => readonly string[] | undefined
  /** how many members have a record, dead ones too (whether the mesh is sparse, overlay.ts) */
  memberCount?: () => number | undefined
  /** a full mesh probes every connection up to this many members (overlay.ts probeEdges) */
  probeAllUpTo?: number
}

export class Redialer {
  private readonly peers = new Map<string, PeerTarget>()
  private readonly addrTargets: AddrTarget[] = []
  private readonly stopping = new AbortController()
  private timer: Beat | undefined
  private readonly self: string
  private readonly failures = new DialFailures()
  /** bootstrap entries that name a peer by id (not this node), by that id */
  private readonly bootstrapPeers = new Map<string, string>()
  /** when a dial of each peer was last refused at every address (wall clock, ms) */
  private readonly refused = new Map<string, number>()
  /** since when dials of each peer have been failing, for whatever reason (wall clock, ms) */
  private readonly failed = new Map<string, number>()
  /** the ring of the members as last worked out, and when (monotonic) */
  private ring: {
    at: number
    neighbours: ReadonlySet<string> | undefined
    /** the peers whose connection carries probes; undefined: all (overlay.ts probeEdges) */
    probed: ReadonlySet<string> | undefined
  } = { at: -Infinity, neighbours: undefined, probed: undefined }
  /** how long this node's dials take, a moving average (ms) */
  private dialMs = 0
  /** when dials wait for the members to be learned (settle.ts) */
  private readonly settle = new Settle()

  constructor(
    private readonly components: RedialComponents,
    bootstrap: readonly Multiaddr[],
  ) {
    const { node } = components
    this.self = node.peerId.toString()
    // a shared bootstrap list usually names this node too
    const own = new Set(node.getMultiaddrs().map((a) => withoutPeerId(a).toString()))
    for (const addr of bootstrap) {
      const id = peerIdIn(addr)
      if (id !== undefined) {
        if (id !== this.self) this.bootstrapPeers.set(id, addr.toString())
        this.remember(id, [addr])
      } else if (!own.has(addr.toString()))
        this.addrTargets.push({ ...fresh(), addr, peerId: undefined })
    }
  }

  start(): void {
    this.timer = onBeat(TICK_MS, () => this.tick(), { unref: true })
    this.tick()
  }

  stop(): void {
    this.timer?.stop()
    this.stopping.abort(new Error('mesh stopped'))
  }

  /** Remembers a peer (and where it listens) for good; addresses must be its own. */
  addPeer(peerId: string, addrs: readonly Multiaddr[] = []): void {
    if (peerId === this.self) return
    let t = this.peers.get(peerId)
    if (t === undefined) {
      const deferMs = this.self < peerId ? 0 : DEFER_MS
      const heardAt = performance.now()
      t = { ...fresh(deferMs), peerId, addrs: new Map(), nextAt: Date.now(), dialAt: 0, heardAt }
      this.peers.set(peerId, t)
    }
    for (const a of addrs) {
      if (t.addrs.size >= MAX_ADDRS_PER_PEER) break
      const own = peerIdIn(a) === undefined ? a.encapsulate(`/p2p/${peerId}`) : a
      if (peerIdIn(own) === peerId) t.addrs.set(own.toString(), own)
    }
  }

  /** A peer from the configuration or from the last run: dialed at start, whatever the ids. */
  remember(peerId: string, addrs: readonly Multiaddr[]): void {
    this.addPeer(peerId, addrs)
    const t = this.peers.get(peerId)
    if (t === undefined) return
    t.nextAt = 0
    t.heardAt = -Infinity
  }

  /** Where a known peer listens (its addresses, with its /p2p/ id), if it is known where. */
  addrsOf(peerId: string): Multiaddr[] | undefined {
    const t = this.peers.get(peerId)
    return t === undefined || t.addrs.size === 0 ? undefined : [...t.addrs.values()]
  }

  /** Every peer known with an address, as kept for the next run (known-peers.ts). */
  known(): Array<{ peerId: string; addrs: string[] }> {
    return [...this.peers.values()]
      .filter((t) => t.addrs.size > 0)
      .map((t) => ({ peerId: t.peerId, addrs: [...t.addrs.keys()] }))
      .sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** Stops redialing a peer (it left the cluster). */
  forget(peerId: string): void {
    this.peers.delete(peerId)
    this.refused.delete(peerId)
    this.failed.delete(peerId)
    this.failures.forget(peerId)
  }

  /** The peers this node dials besides its bootstrap peers; undefined: every one (a full mesh). */
  neighbours(): ReadonlySet<string> | undefined {
    const now = performance.now()
    if (now - this.ring.at < RING_EVERY_MS) return this.ring.neighbours
    const members = this.components.members?.()
    if (members === undefined) return undefined // no membership: every peer is dialed
    const upTo = this.components.fullMeshUpTo ?? DEFAULT_FULL_MESH_UP_TO
    this.settle.note(members.length, now)
    const count = this.components.memberCount?.()
    const neighbours = ringNeighbours(this.self, members, upTo, count)
    const probeAll = this.components.probeAllUpTo ?? DEFAULT_PROBE_ALL_UP_TO
    // a sparse mesh watches its ring's links alone (not its bootstrap peer's, nor a call's)
    const probed = probeEdges(this.self, members, neighbours ? upTo : probeAll, count)
    this.ring = { at: now, neighbours, probed }
    return this.ring.neighbours
  }

  /** The peers whose connection carries liveness probes now; undefined: every one. */
  probed(): ReadonlySet<string> | undefined {
    this.neighbours()
    return this.ring.probed
  }

  /** Bootstrap addresses that are not (as far as is known) this node's own. */
  bootstrapElsewhere(): string[] {
    const out = [...this.bootstrapPeers.values()]
    for (const t of this.addrTargets) if (t.peerId !== this.self) out.push(t.addr.toString())
    return out
  }

  /** Since when dials of this peer have failed (any error), since it last connected. */
  failedAt(peerId: string): number | undefined {
    return this.failed.get(peerId)
  }

  /** Whether an inbound connection from this peer crosses this node's own dial (crossing.ts). */
  yieldsTo(peerId: string): boolean {
    const t = this.peers.get(peerId)
    if (t === undefined || this.self >= peerId) return false
    const opened = this.components.node
      .getConnections(peerIdFromString(peerId))
      .filter((c) => c.direction === 'outbound')
      .map((c) => Date.now() - c.timeline.open)
    return yields(
      this.self,
      peerId,
      t.inFlight,
      opened.length > 0 ? Math.min(...opened) : undefined,
    )
  }

  /** The peer connected (whoever dialed): its dials are not failing any more. */
  connected(peerId: string): void {
    this.refused.delete(peerId)
    this.failed.delete(peerId)
  }

  /** When a dial of this peer was last refused at every address, since it last connected. */
  refusedAt(peerId: string): number | undefined {
    return this.refused.get(peerId)
  }

  /** The last failed dial, `target: error`. */
  lastDialError(): string | undefined {
    return this.failures.last
  }

  /** Whether this node dials the peer: a bootstrap peer, or one of a full mesh or the ring. */
  dials(peerId: string): boolean {
    return this.neighbours()?.has(peerId) !== false || this.bootstrapPeers.has(peerId)
  }

  /** Dials known peers now, backoff or not (an announcement, a healed partition), but those
   * it does not dial (off a sparse ring): no tick for them (one per relayed record came here). */
  dialNow(peerIds?: string | readonly string[]): void {
    const ids = typeof peerIds === 'string' ? [peerIds] : peerIds
    const named = ids?.filter((id) => this.dials(id))
    if (named?.length === 0) return
    for (const t of named?.map((p) => this.peers.get(p)) ?? this.peers.values()) {
      if (t === undefined) continue
      t.delay = REDIAL_MIN_DELAY_MS
      t.nextAt = Math.min(t.nextAt, Date.now())
    }
    if (ids === undefined) for (const t of this.addrTargets) Object.assign(t, fresh())
    if (this.timer !== undefined) this.tick()
  }

  private tick(): void {
    const now = Date.now()
    const { isBlocked, node } = this.components
    const connected = new Set(connectedPeerIds(node))
    const ring = this.neighbours()
    // a node still learning members (a start) holds back its dials (settle.ts); neighbours()
    // works the ring out at most every RING_EVERY_MS, so a member learned since is noted here
    const mono = performance.now()
    const members = this.components.members?.()
    if (members !== undefined) this.settle.note(members.length, mono)
    const settling = this.settle.settling(mono, ring !== undefined)
    // a full mesh past its probe-all size makes its ring's links (its watch) before the others
    const edges = ring === undefined ? this.ring.probed : undefined
    const pending = (p: string) =>
      !connected.has(p) && !this.failed.has(p) && this.peers.has(p) && !isBlocked(p)
    const edgesFirst = edges !== undefined && [...edges].some(pending)
    const ages = [...this.peers.values()].filter((p) => p.inFlight).map((p) => mono - p.dialAt)
    const defer = deferMs(this.dialMs, ages)
    let inFlight = 0
    for (const t of this.peers.values()) if (t.inFlight) inFlight++
    for (const t of this.addrTargets) if (t.inFlight) inFlight++
    for (const t of this.peers.values()) {
      if (isBlocked(t.peerId)) {
        // the (test-only) partition switch: a peer it denies is one not reached (a real
        // partition's dials time out), a full mesh's too: met nowhere, it was alive for good
        if (ring?.has(t.peerId) !== false && !this.failed.has(t.peerId))
          this.failed.set(t.peerId, Date.now())
        continue
      }
      // a sparse mesh: the ring's neighbours and the bootstrap peers only
      const bootstrap = this.bootstrapPeers.has(t.peerId)
      if (!bootstrap && settling) {
        t.heardAt = mono // the peer waits as long: its wait for this node's dial starts after
        continue
      }
      if (!bootstrap && ring !== undefined && !ring.has(t.peerId)) continue
      if (!bootstrap && edgesFirst && edges?.has(t.peerId) !== true) continue
      // due() also keeps the backoff's books for a connected peer: ask it first; not while the
      // peer's own dial may come (DEFER_MS) or its connection is being set up here
      const waits = (t.deferMs > 0 && mono - t.heardAt < defer) || upgradingFrom(node, t.peerId)
      if (due(t, connected.has(t.peerId), now) && !waits && inFlight++ < MAX_DIALS_IN_FLIGHT) {
        const target = t.addrs.size > 0 ? [...t.addrs.values()] : peerIdFromString(t.peerId)
        const id = t.peerId
        t.dialAt = performance.now()
        this.dial(
          t,
          target,
          id,
          () => {
            this.connected(id)
            this.dialMs += (performance.now() - t.dialAt - this.dialMs) / 4
          },
          (err) => {
            if (dialRefused(err)) this.refused.set(id, Date.now())
            if (!this.failed.has(id)) this.failed.set(id, Date.now()) // failing since
          },
          // the peer may have refused this connection for its own dial of us (crossing.ts)
          this.self > id ? () => connectedPeerIds(node).includes(id) : undefined,
        )
      }
    }
    for (const t of this.addrTargets) {
      const known = t.peerId === undefined ? undefined : this.peers.get(t.peerId)
      if (t.peerId === this.self || known?.inFlight === true) continue
      if (t.peerId !== undefined && isBlocked(t.peerId)) continue
      if (due(t, t.peerId !== undefined && connected.has(t.peerId), now)) {
        this.dial(
          t,
          t.addr,
          t.addr.toString(),
          (remote) => this.learned(t, remote),
          (err) => {
            // our own address under another name (a host name, another interface)
            if (isSelfDial(err)) this.learned(t, this.self)
          },
        )
      }
    }
  }

  private dial(
    t: Backoff,
    target: Multiaddr | Multiaddr[] | PeerId,
    label: string,
    onConnected?: (remote: string) => void,
    onFailed?: (err: unknown) => void,
    /** a failure is judged YIELD_GRACE_MS later, and is none if this says connected by then */
    yielded?: () => boolean,
  ): void {
    const { node } = this.components
    t.inFlight = true
    const signal = AbortSignal.any([AbortSignal.timeout(DIAL_TIMEOUT_MS), this.stopping.signal])
    node
      .dial(target, { signal })
      .then((conn) => {
        t.upSince = Date.now()
        onConnected?.(conn.remotePeer.toString())
        this.dialed(label)
      })
      .catch((err: unknown) => {
        failed(t, Date.now())
        if (this.stopping.signal.aborted) return
        const judge = (): void => {
          if (this.stopping.signal.aborted || yielded?.() === true) return
          onFailed?.(err)
          if (!isSelfDial(err)) this.dialFailed(label, err, t.nextAt - Date.now())
        }
        if (yielded === undefined || dialRefused(err)) return judge()
        // refused for the peer's own dial, most likely: that one is given time to finish
        t.nextAt = Math.max(t.nextAt, Date.now() + SECOND_DIAL_MS)
        setTimeout(judge, YIELD_GRACE_MS).unref()
      })
      .finally(() => {
        t.inFlight = false
      })
  }

  // Every failure counts; the first for a target is logged at warn, then one line a minute.
  private dialFailed(target: string, err: unknown, retryInMs: number): void {
    const { log, counters } = this.components
    counters.dialFailures++
    const error = describeDialError(err)
    const failures = this.failures.failed(target, error, Date.now())
    if (failures > 0) log.warn({ target, failures, retryInMs, err: error }, 'dial failed')
    else log.debug({ target, retryInMs, err: error }, 'dial failed')
  }

  private dialed(target: string): void {
    const failures = this.failures.succeeded(target)
    if (failures > 0)
      this.components.log.info({ target, failures }, 'dial succeeded after failures')
  }

  // A bootstrap address without an id: remember who answered, and keep that peer for good.
  private learned(t: AddrTarget, remote: string): void {
    if (t.peerId === remote) return
    const addr = t.addr.toString()
    t.peerId = remote
    if (remote === this.self) {
      this.components.log.info({ addr }, 'bootstrap address is this node; not dialing it')
      return
    }
    this.components.log.info({ addr, peer: remote }, 'bootstrap address answered')
    this.addPeer(remote, [t.addr])
  }
}
