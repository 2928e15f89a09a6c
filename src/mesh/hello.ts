// A direct hello on every new connection, both ways, once: this node's membership record and
// the peers it is connected to. A new node learns the whole cluster from its bootstrap peer in
// one round trip (not from gossip relayed one hop at a time), and every member learns the new
// node from its own connection, with no record flooded to everyone at once (at 32 nodes that
// flood was most of a start's CPU). A peer that wants a record again asks through the liveness
// probe (liveness.ts) and gets a hello with the record only. The connection authenticates the
// sender (Noise), so the record must name that peer. A peer that does not speak the protocol
// runs an older traktor (mesh protocol 1): it is refused, with one clear log line.
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../log.js'
import {
  decodeHello,
  encodeHello,
  type Hello,
  MAX_HELLO_PEERS,
  type MembershipHeartbeat,
  WIRE_VERSION,
} from './codec.js'
import { HELLO_KEPT_PROTOCOL, HELLO_PROTOCOL, HelloStreams } from './hello-streams.js'
import { identified, type MeshNode } from './libp2p.js'

export { HELLO_KEPT_PROTOCOL, HELLO_PROTOCOL }

/** a hello names at most MAX_HELLO_PEERS peers, each with a few addresses */
const MAX_HELLO_BYTES = 1024 * 1024
const HELLO_TIMEOUT_MS = 3000
/** a peer asking through every probe gets one answer this often at most */
const ANSWER_EVERY_MS = 200
/** a peer still starting has not registered the protocol yet: tried again this often */
const RETRY_MS = 300
const MAX_TRIES = 10
/**
 * After the first hello, the peers connected since (and those whose addresses this node did
 * not know yet) are named again this long after the connection: two nodes that reached one
 * bootstrap peer at the same moment are not in each other's first list.
 */
const AGAIN_AFTER_MS = [1000, 4000]
/** a record heard first-hand is passed on to the connected peers this long after */
const PUSH_AFTER_MS = 250
/** a full mesh's new member, heard first-hand, is passed on this long after (a start) */
const RELAY_AFTER_MS = 100
/** the liveness probe of mesh protocol 1 (before the hello); liveness.ts still answers it */
export const LIVENESS_PROTOCOL_V1 = '/traktor/alive/1.0.0'

/**
 * Whether the peer is an arbiter of mesh protocol 1: it speaks the old liveness probe and not
 * the hello. Asked when a hello or probe was refused; identify (which does not run on every
 * connection, libp2p.ts) tells the peer's protocols now. Still registering them: false.
 */
export async function olderArbiter(node: Libp2p, peer: PeerId): Promise<boolean> {
  try {
    const conn = node.getConnections(peer)[0]
    const identify = (node as Partial<MeshNode>).services?.identify
    const signal = AbortSignal.timeout(HELLO_TIMEOUT_MS)
    const { protocols } =
      conn !== undefined && identify !== undefined
        ? await identify.identify(conn, { signal })
        : await node.peerStore.get(peer)
    return protocols.includes(LIVENESS_PROTOCOL_V1) && !protocols.includes(HELLO_PROTOCOL)
  } catch {
    return false
  }
}

export type PeerAddrs = Hello['peers'][number]

export interface HelloComponents {
  node: Libp2p
  log: Logger
}

export interface HelloInit {
  /** this node's membership record (signed), when the membership runs; `fresh`: numbered anew */
  record(fresh: boolean): Promise<Hello['record'] | undefined>
  /** the peers to name to this one (connected, with addresses) */
  peers(to: string): PeerAddrs[]
  /** this node and where it listens (named in a first hello that carries no record) */
  self?(): PeerAddrs
  /** other members' signed records to pass on to this one */
  relayed?(to: string): MembershipHeartbeat[]
  /** how many members' records this node holds (said in every hello) */
  members?(): number
  /** whether this peer is unknown here (no record of it) */
  isNew?(id: string): boolean
  /** a hello from this peer came in: whether to pass it what it lacks now (a full mesh) */
  relayTo?(from: string): boolean
  onRecord(from: string, record: NonNullable<Hello['record']>): void
  onPeers(from: string, peers: readonly PeerAddrs[]): void
  onRelayed?(from: string, records: readonly MembershipHeartbeat[]): void
}

export class HelloExchange {
  private readonly answeredAt = new Map<string, number>()
  private readonly refusedOld = new Set<string>()
  /** the connections a hello came in on (libp2p told, as identify would: libp2p.ts identified) */
  private readonly identified = new WeakSet<Connection>()
  /** per peer: the peers already named to it in this connection */
  private readonly named = new Map<string, Set<string>>()
  /** per peer: the records already passed on to it in this connection (peer id → seq) */
  private readonly passed = new Map<string, Map<string, number>>()
  /** per peer: the members it has shown it knows in this connection (its hellos) */
  private readonly shown = new Map<string, Set<string>>()
  /** per peer: how many members' records it said it holds, in its last hello */
  private readonly counts = new Map<string, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  /** the connected peers, by id, once their first hello went out */
  private readonly greeted = new Map<string, PeerId>()
  private pushing: NodeJS.Timeout | undefined
  /** what the pending push sends: `again` (peers and records) or `relay` (records only) */
  private pushKind: 'again' | 'relay' = 'again'
  private running = false
  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail
    this.named.set(peer.toString(), new Set())
    this.passed.set(peer.toString(), new Map())
    this.shown.set(peer.toString(), new Set([peer.toString()]))
    this.counts.delete(peer.toString())
    this.greeted.set(peer.toString(), peer)
    void this.send(peer, 'first', MAX_TRIES)
    for (const ms of AGAIN_AFTER_MS) {
      const t = setTimeout(() => {
        this.timers.delete(t)
        if (this.named.has(peer.toString())) void this.send(peer, 'again', 1)
      }, ms)
      t.unref()
      this.timers.add(t)
    }
  }
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    this.streams.forget(evt.detail.toString())
    this.named.delete(evt.detail.toString())
    this.passed.delete(evt.detail.toString())
    this.shown.delete(evt.detail.toString())
    this.counts.delete(evt.detail.toString())
    this.greeted.delete(evt.detail.toString())
  }

  private readonly streams: HelloStreams

  constructor(
    private readonly components: HelloComponents,
    private readonly init: HelloInit,
  ) {
    this.streams = new HelloStreams(components.node, MAX_HELLO_BYTES)
  }

  async start(): Promise<void> {
    const { node } = this.components
    await node.handle(HELLO_KEPT_PROTOCOL, (stream, conn) => this.receiveAll(stream, conn), {
      maxInboundStreams: 8,
    })
    await node.handle(HELLO_PROTOCOL, (stream, conn) => this.receive(stream, conn), {
      maxInboundStreams: 8,
    })
    node.addEventListener('peer:connect', this.onConnect)
    node.addEventListener('peer:disconnect', this.onDisconnect)
    this.running = true
  }

  stop(): void {
    this.running = false
    this.streams.stop()
    this.components.node.removeEventListener('peer:connect', this.onConnect)
    this.components.node.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.named.clear()
    this.passed.clear()
    this.shown.clear()
    this.counts.clear()
    this.greeted.clear()
    clearTimeout(this.pushing)
    this.answeredAt.clear()
  }

  /**
   * A sparse mesh: a member's record came first-hand (its own hello), so the connected peers
   * may lack it; each gets a hello with the records it was not given yet, PUSH_AFTER_MS from
   * now (one for a burst). Records a peer passed on are not passed again (each member reaches
   * every other through the members connected to it), so a record crosses few connections.
   */
  push(what: 'again' | 'relay' = 'again'): void {
    if (!this.running) return
    if (what === 'again') this.pushKind = 'again'
    if (this.pushing !== undefined) return
    this.pushKind = what
    this.pushing = setTimeout(
      () => {
        this.pushing = undefined
        for (const peer of this.greeted.values()) void this.send(peer, this.pushKind, 1)
      },
      what === 'relay' ? RELAY_AFTER_MS : PUSH_AFTER_MS,
    )
    this.pushing.unref()
  }

  /**
   * Whether this peer said it holds fewer members' records than this node does (a full mesh
   * passes records on to such a peer only: a start, where it knows its bootstrap peer alone);
   * before its first hello, whether it is new here (a node just started knows next to none)
   */
  behind(id: string): boolean {
    const theirs = this.counts.get(id)
    if (theirs === undefined) return this.init.isNew?.(id) === true
    return theirs < (this.init.members?.() ?? 0)
  }

  /** Whether this peer has shown in this connection that it knows this member. */
  knows(id: string, member: string): boolean {
    return this.shown.get(id)?.has(member) === true
  }

  /** The peer asked for this node's record (its liveness probe said so). */
  asked(id: string): void {
    const now = Date.now()
    if (now - (this.answeredAt.get(id) ?? 0) < ANSWER_EVERY_MS) return
    this.answeredAt.set(id, now)
    void this.send(peerIdFromString(id), 'record', 1)
  }

  /**
   * first: the record and every peer connected here; again: the peers not named to it yet and
   * the records to pass on (nothing if there are none); relay: those records only; record: the
   * record alone (the peer asked).
   */
  private async send(
    peer: PeerId,
    what: 'first' | 'again' | 'relay' | 'record',
    tries: number,
  ): Promise<void> {
    if (!this.running) return
    const { node, log } = this.components
    const id = peer.toString()
    const named = this.named.get(id)
    if (what === 'first') named?.clear()
    const peers =
      what === 'record' || what === 'relay'
        ? []
        : this.init.peers(id).filter((p) => !named?.has(p.peerId) && !this.knows(id, p.peerId))
    const relayed = what === 'record' ? [] : this.toPass(id)
    const later = what === 'again' || what === 'relay'
    if (later && peers.length === 0 && relayed.length === 0) return
    for (const p of peers) named?.add(p.peerId)
    // a new connection gets the record as it last went out; a peer that asks, a new one
    const record = later ? undefined : await this.init.record(what === 'record')
    const members = this.init.members?.()
    // without a record (a mesh without membership), a new connection is told where this node
    // listens, which identify told before (it does not run on every connection: libp2p.ts)
    const own = what === 'first' && record === undefined ? this.init.self?.() : undefined
    const hello: Hello = {
      v: WIRE_VERSION,
      kind: 'hello',
      ...(record === undefined ? {} : { record }),
      peers: own === undefined ? peers : [own, ...peers.slice(0, MAX_HELLO_PEERS - 1)],
      ...(relayed.length === 0 ? {} : { relayed }),
      ...(members === undefined ? {} : { members }),
    }
    try {
      const bytes = encodeHello(hello, MAX_HELLO_BYTES)
      const signal = AbortSignal.timeout(HELLO_TIMEOUT_MS)
      await this.streams.send(peer, bytes, signal)
    } catch (err) {
      if ((err as Error).name !== 'UnsupportedProtocolError') {
        log.debug({ peer: id, err: (err as Error).message }, 'hello not sent')
        return
      }
      if (!(await olderArbiter(node, peer))) {
        // a peer that is starting: its protocols are not all registered yet
        if (tries > 1) {
          await new Promise((r) => setTimeout(r, RETRY_MS).unref())
          if (node.getConnections(peer).length > 0) await this.send(peer, what, tries - 1)
        }
        return
      }
      if (!this.refusedOld.has(id)) {
        this.refusedOld.add(id)
        log.warn(
          { peer: id, protocol: HELLO_PROTOCOL },
          'peer runs an older traktor (mesh protocol 1): refused; run one traktor version on every arbiter',
        )
      }
      await node.hangUp(peer).catch(() => {})
    }
  }

  /** The records to pass on to a peer that it was not given yet in this connection. */
  private toPass(id: string): MembershipHeartbeat[] {
    const passed = this.passed.get(id)
    const out = (this.init.relayed?.(id) ?? []).filter(
      (r) => r.peerId !== id && passed?.get(r.peerId) !== r.seq,
    )
    const shown = this.shown.get(id)
    for (const r of out) {
      passed?.set(r.peerId, r.seq ?? 0)
      shown?.add(r.peerId)
    }
    return out
  }

  /** A hello 1.0.0: one hello on a stream of its own. */
  private async receive(stream: Stream, conn: Connection): Promise<void> {
    try {
      const signal = AbortSignal.timeout(HELLO_TIMEOUT_MS)
      const buf = await lpStream(stream, { maxDataLength: MAX_HELLO_BYTES }).read({ signal })
      await stream.close({ signal }).catch(() => {})
      this.take(buf.subarray(), conn)
    } catch (err) {
      stream.abort(err as Error)
      this.components.log.debug(
        { peer: conn.remotePeer.toString(), err: (err as Error).message },
        'hello not received',
      )
    }
  }

  /** A kept stream (hello 1.1.0, hello-streams.ts): hello after hello, until it ends. */
  private async receiveAll(stream: Stream, conn: Connection): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_HELLO_BYTES })
    try {
      for (;;) this.take((await lp.read()).subarray(), conn)
    } catch (err) {
      // the connection closed (an end of stream), or a message past MAX_HELLO_BYTES
      stream.abort(err as Error)
    }
  }

  private take(buf: Uint8Array, conn: Connection): void {
    // read after its connection closed (bytes that came before the close): no news of the peer
    if (conn.status !== 'open') return
    const from = conn.remotePeer
    const id = from.toString()
    const { log } = this.components
    try {
      const d = decodeHello(buf, MAX_HELLO_BYTES)
      if (!d.ok) {
        log.warn({ peer: id, reason: d.reason, detail: d.detail }, 'hello rejected')
        return
      }
      const { record, peers, relayed } = d.value
      if (record !== undefined && record.peerId !== id) {
        log.warn(
          { peer: id, claims: record.peerId },
          'hello rejected: the record names another peer',
        )
        return
      }
      if (!this.identified.has(conn)) {
        this.identified.add(conn)
        const addrs = record?.addrs ?? peers.find((p) => p.peerId === id)?.addrs ?? []
        identified(
          this.components.node,
          conn,
          addrs.map((a) => multiaddr(a)),
        )
      }
      const { members } = d.value
      if (members !== undefined) this.counts.set(id, members)
      const shown = this.shown.get(id)
      for (const p of [...peers, ...(relayed ?? [])]) shown?.add(p.peerId)
      if (record !== undefined) this.init.onRecord(id, record)
      if (peers.length > 0) this.init.onPeers(id, peers)
      if (relayed !== undefined && relayed.length > 0) this.init.onRelayed?.(id, relayed)
      if (this.running && this.init.relayTo?.(id)) void this.send(from, 'relay', 1)
    } catch (err) {
      log.warn({ peer: id, err: (err as Error).message }, 'hello not taken')
    }
  }
}
