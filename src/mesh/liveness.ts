// Closes a connection whose peer stopped answering (a frozen process, a dead host, a cut
// cable) within ~1-2 s; TCP alone would take minutes. Replaces libp2p's connection monitor,
// which opens a new stream for every ping (with 64 peers, over a hundred stream negotiations a
// second) and cuts every connection at once when this node's own event loop stalls past the
// timeout.
//
// One side of each connection probes (the one whose peer id sorts first): one byte every
// probeEveryMs on one kept stream, answered with one byte. Both sides hear the other by it —
// the prober by the answer, the other by the probe — so a member's liveness costs a byte each
// way per period, not a gossiped heartbeat. No answer within DEAD_AFTER_MS closes the
// connection on the prober's side; no probe within DEAD_AFTER_MS + the period closes it on the
// other. Time this node spent stalled is not held against its peers, and a verdict waits for
// the I/O already received to be read.
//
// The byte says more (protocol 2): bit 0 set means "send me your record" (the sender holds this
// node dead, does not know it, or holds an old record of it), and bits 1-7 are a digest of the
// sender's own current record, so that a peer that missed a change (gossip reaches only peers
// whose subscription is known) sees it at the next probe and asks. An arbiter that speaks only
// protocol 1 (every byte echoed, both sides probing) is still probed and answered.
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import { patience } from '../patience.js'
import { LIVENESS_PROTOCOL_V1, olderArbiter } from './hello.js'

export { LIVENESS_PROTOCOL_V1 }
export const LIVENESS_PROTOCOL = '/traktor/alive/2.0.0'
export const PROBE_INTERVAL_MS = 500
export const DEAD_AFTER_MS = 1250
/**
 * A peer whose answers have been slow (its process busy, not gone) is given longer, as TCP's
 * retransmission timeout (RFC 6298): the smoothed answer time plus four deviations, never less
 * than DEAD_AFTER_MS and never more than this. A peer that answered at once and then stops is
 * still cut at DEAD_AFTER_MS; the membership's suspect/dead verdicts do not wait for this (they
 * count silence), it only keeps a slow peer's connection from being closed and made again: in a
 * 64-node mesh on two cores (every process saturated while the connections are made) 2,403
 * connections were closed as unresponsive in 90 s, each one's redial a new handshake for a
 * process already behind; 660 with this (same run, logged).
 */
const MAX_DEAD_AFTER_MS = 8 * DEAD_AFTER_MS
/** a connection that is not watched is probed this many times less often (LivenessInit.probes) */
export const SLOW_FACTOR = 10
/** A tick this much later than planned means this process, not its peers, was stalled. */
const STALL_MS = 100
const ASK = 1
/** A peer that did not know the protocol is asked again after this long (it may have been starting). */
const UNSUPPORTED_RETRY_MS = 500

export interface LivenessComponents {
  node: Libp2p
  log: Logger
}

export interface LivenessInit {
  /** how often each connection is probed (default PROBE_INTERVAL_MS) */
  probeEveryMs?: number
  /**
   * whether this peer's connection is watched (default: every one). A large full mesh watches
   * its ring's connections only (overlay.ts probeEdges); the others are probed SLOW_FACTOR
   * times less often, for the digest and record asks alone (a record change whose gossip was
   * missed still arrives), never closed for silence, and their peers not "heard" (the
   * membership judges them by rumor).
   */
  probes?(peerId: string): boolean
  /** whether to ask this peer for its record (unknown, held dead, or its digest changed) */
  wantsRecord?(peerId: string): boolean
  /** the peer asked for this node's record */
  onAsked?(peerId: string): void
  /** the 7-bit digest of this node's current record */
  digest?(): number
  /** a peer's probe or answer carried this digest of its record */
  onDigest?(peerId: string, digest: number): void
}

interface Probe {
  conn: Connection
  /** this side probes (its peer id sorts first); the other only answers */
  prober: boolean
  /** when this node began to watch the peer (monotonic) */
  since: number
  /** probing a peer that should probe this node and did not */
  tookOver: boolean
  protocol: string
  stream: Stream | undefined
  opening: boolean
  /**
   * Until when the remote is taken as one that does not speak the protocol (not an arbiter,
   * or one still starting up): nothing to judge until then
   */
  unsupportedUntil: number
  /** when the unanswered probe was sent, if one is out */
  sentAt: number | undefined
  lastSentAt: number
  awaiting: number
  /** how late this peer's answers (prober) or probes (the other side) come */
  delay: Delay
  /** not watched (LivenessInit.probes): probed slowly, for its digest only */
  slow: boolean
}

/** A smoothed delay and its mean deviation (RFC 6298's estimator), in ms. */
export class Delay {
  private srtt: number | undefined
  private rttvar = 0

  sample(ms: number): void {
    if (this.srtt === undefined) {
      this.srtt = ms
      this.rttvar = ms / 2
      return
    }
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms)
    this.srtt = 0.875 * this.srtt + 0.125 * ms
  }

  /** how long silence may last before the connection is cut */
  deadlineMs(): number {
    const rto = this.srtt === undefined ? 0 : this.srtt + 4 * this.rttvar
    return Math.min(MAX_DEAD_AFTER_MS, Math.max(DEAD_AFTER_MS, rto))
  }
}

export class Liveness {
  private readonly probes = new Map<string, Probe>()
  /** when each peer was last heard on its probe stream (wall clock, ms) */
  private readonly heard = new Map<string, number>()
  /** every peer heard on its probe stream at some time in this run */
  private readonly everHeard = new Set<string>()
  /** per peer: when the other side's probe last arrived (monotonic) */
  private readonly probedAt = new Map<string, number>()
  private readonly everyMs: number
  /** everyMs, times the mesh's size's patience (patience.ts) */
  private periodMs: number
  private readonly tickMs: number
  private timer: Beat | undefined
  private lastTick = 0

  constructor(
    private readonly components: LivenessComponents,
    private readonly init: LivenessInit = {},
  ) {
    this.everyMs = Math.max(20, init.probeEveryMs ?? PROBE_INTERVAL_MS)
    this.periodMs = this.everyMs
    this.tickMs = Math.max(10, Math.min(250, Math.floor(this.everyMs / 2)))
  }

  async start(): Promise<void> {
    const opts = { maxInboundStreams: 2, maxOutboundStreams: 2 }
    const { node } = this.components
    await node.handle(LIVENESS_PROTOCOL, (s, c) => this.answer(s, c, true), opts)
    await node.handle(LIVENESS_PROTOCOL_V1, (s, c) => this.answer(s, c, false), opts)
    this.lastTick = performance.now()
    this.timer = onBeat(this.tickMs, () => this.tick(), { unref: true })
  }

  stop(): void {
    this.timer?.stop()
    this.timer = undefined
    for (const p of this.probes.values()) p.stream?.abort(new Error('mesh stopped'))
    this.probes.clear()
    this.heard.clear()
    this.everHeard.clear()
    this.probedAt.clear()
  }

  /**
   * When this peer was last heard on its probe stream (wall clock, ms): its process runs and
   * reads its connection. The membership takes it as news of the peer.
   */
  answeredAt(peerId: string): number | undefined {
    return this.heard.get(peerId)
  }

  /** Whether this peer has been heard on its probe stream at some time in this run. */
  met(peerId: string): boolean {
    return this.everHeard.has(peerId)
  }

  private tick(): void {
    const now = performance.now()
    const stalled = now - this.lastTick - this.tickMs
    this.lastTick = now
    const self = this.components.node.peerId.toString()
    // one probe per peer, on its oldest open connection: two peers that dialled each other at
    // once hold two connections, and both go down together with the peer's process or path
    const byPeer = new Map<string, Connection>()
    for (const conn of this.components.node.getConnections()) {
      if (conn.status !== 'open') continue
      const peer = conn.remotePeer.toString()
      const had = byPeer.get(peer)
      if (had === undefined || conn.timeline.open < had.timeline.open) byPeer.set(peer, conn)
    }
    this.periodMs = this.everyMs * patience(byPeer.size + 1)
    for (const [peer, conn] of byPeer) {
      const slow = this.init.probes?.(peer) === false
      if (slow) this.unheard(peer)
      let p = this.probes.get(peer)
      if (p !== undefined && p.conn.status !== 'open') {
        p.stream = undefined // its connection went: go on on another one
        p.conn = conn
      }
      if (p === undefined) {
        p = {
          conn,
          prober: self < peer,
          since: now,
          tookOver: false,
          protocol: LIVENESS_PROTOCOL,
          stream: undefined,
          opening: false,
          unsupportedUntil: 0,
          sentAt: undefined,
          lastSentAt: 0,
          awaiting: 0,
          delay: new Delay(),
          slow,
        }
        this.probes.set(peer, p)
      }
      if (p.slow && !slow) {
        // watched from now on: what a slow probe left out or in is no silence
        p.since = now
        p.sentAt = undefined
        this.probedAt.delete(peer)
      }
      p.slow = slow
      const periodMs = slow ? this.periodMs * SLOW_FACTOR : this.periodMs
      if (stalled > STALL_MS) {
        if (p.sentAt !== undefined) p.sentAt += stalled
        const probed = this.probedAt.get(peer)
        if (probed !== undefined) this.probedAt.set(peer, probed + stalled)
      }
      const probed = this.probedAt.get(peer)
      if (!p.prober && probed === undefined && now - p.since > 2 * periodMs) {
        p.prober = p.tookOver = true // the peer should probe and does not: probe it from here
      } else if (p.tookOver && probed !== undefined && now - probed < 2 * periodMs) {
        p.prober = p.tookOver = false // it probes after all (it was starting, or loaded)
        p.sentAt = undefined
      }
      if (!p.prober) continue
      const idle = p.sentAt === undefined && now >= p.unsupportedUntil
      if (idle && now - p.lastSentAt >= periodMs - this.tickMs / 2) {
        this.send(p, now)
      } else if (p.sentAt !== undefined && p.stream === undefined) {
        void this.open(p) // the probe's stream went away with the probe unanswered
      }
    }
    for (const id of this.probes.keys()) if (!byPeer.has(id)) this.probes.delete(id)
    for (const id of this.probedAt.keys()) if (!byPeer.has(id)) this.probedAt.delete(id)
    // a peer no longer connected is no longer heard here: a sparse mesh judges it by rumor
    // (an answer kept from an old connection made it a member probed here, silent for ever)
    for (const id of this.heard.keys()) if (!byPeer.has(id)) this.heard.delete(id)
    // judge only after the poll phase has read whatever answers are already waiting
    setImmediate(() => this.judge())
  }

  /** This peer's connection is not watched (any more): what was heard on it is no evidence. */
  private unheard(peer: string): void {
    this.heard.delete(peer)
    this.everHeard.delete(peer) // watched again later: not heard until it answers anew
  }

  private judge(): void {
    const now = performance.now()
    const { node, log } = this.components
    for (const [peer, p] of this.probes) {
      if (p.slow) continue // never closed for silence here: the membership judges it by rumor
      const since = p.prober ? p.sentAt : this.probedAt.get(peer)
      if (since === undefined) continue // nothing out, or the other side never probed yet
      // the other side's probes come every period: silence counts from when the next was due
      const silentMs = now - since - (p.prober ? 0 : this.periodMs)
      if (silentMs < p.delay.deadlineMs()) continue
      log.warn(
        { peer, afterMs: Math.round(silentMs), prober: p.prober },
        'peer unresponsive; closing its connection',
      )
      this.probes.delete(peer)
      this.probedAt.delete(peer)
      const err = new Error(
        `no liveness probe answered or received within ${Math.round(silentMs)} ms`,
      )
      for (const c of node.getConnections(p.conn.remotePeer)) c.abort(err)
    }
  }

  /** What this node sends to a peer (length bytes): ASK if it wants its record, and our digest. */
  private bytes(peer: string, length = 1): Uint8Array {
    const out = new Uint8Array(length)
    out[0] = (((this.init.digest?.() ?? 0) & 0x7f) << 1) | (this.init.wantsRecord?.(peer) ? ASK : 0)
    return out
  }

  private received(peer: string, data: { subarray(): Uint8Array }, v2: boolean): void {
    if (this.probes.get(peer)?.slow !== true) {
      this.heard.set(peer, Date.now())
      this.everHeard.add(peer)
    }
    if (!v2) return
    const byte = data.subarray()[0] ?? 0
    this.init.onDigest?.(peer, byte >> 1)
    if ((byte & ASK) !== 0) this.init.onAsked?.(peer)
  }

  private send(p: Probe, now: number): void {
    p.sentAt = now
    p.lastSentAt = now
    if (p.stream === undefined) {
      void this.open(p)
      return
    }
    const peer = p.conn.remotePeer.toString()
    const bytes = p.protocol === LIVENESS_PROTOCOL ? this.bytes(peer) : new Uint8Array(8)
    p.awaiting += bytes.byteLength
    try {
      p.stream.send(bytes)
    } catch {
      p.stream = undefined // reopened by the next tick
    }
  }

  private async open(p: Probe): Promise<void> {
    if (p.opening || this.timer === undefined || p.conn.status !== 'open') return
    p.opening = true
    const peer = p.conn.remotePeer.toString()
    const conn = p.conn
    try {
      const stream = await conn.newStream(p.protocol, {
        signal: AbortSignal.timeout(DEAD_AFTER_MS),
      })
      const v2 = p.protocol === LIVENESS_PROTOCOL
      stream.addEventListener('message', (evt) => {
        p.awaiting -= evt.data.byteLength
        if (p.awaiting <= 0) {
          p.awaiting = 0
          if (p.sentAt !== undefined) p.delay.sample(performance.now() - p.sentAt)
          p.sentAt = undefined
          this.received(peer, evt.data, v2)
        }
      })
      // A reset probe stream is reopened by the next tick, never from this handler: the
      // reset may be the connection going down, and yamux 8 throws an uncaught error from a
      // microtask when a stream is opened on a connection closing underneath it.
      stream.addEventListener('close', () => {
        if (p.stream === stream) p.stream = undefined
      })
      if (p.conn !== conn) {
        stream.abort(new Error('moved to another connection'))
        return
      }
      p.stream = stream
      const bytes = v2 ? this.bytes(peer) : new Uint8Array(8)
      p.awaiting = bytes.byteLength
      stream.send(bytes)
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') {
        if (
          p.protocol === LIVENESS_PROTOCOL &&
          (await olderArbiter(this.components.node, conn.remotePeer))
        ) {
          p.protocol = LIVENESS_PROTOCOL_V1 // an older arbiter: probe it the old way
        } else {
          // not an arbiter, or one still registering its protocols
          p.unsupportedUntil = performance.now() + UNSUPPORTED_RETRY_MS
        }
        p.sentAt = undefined // it answered, so it is alive; it just cannot be probed yet
      }
    } finally {
      p.opening = false
    }
  }

  // The other side: answer every probe with as many bytes (protocol 2: a byte of our own).
  private answer(stream: Stream, conn: Connection, v2: boolean): void {
    const peer = conn.remotePeer.toString()
    stream.addEventListener('message', (evt) => {
      const now = performance.now()
      const last = this.probedAt.get(peer)
      // how much later than its period this probe came: a busy prober is given longer
      if (last !== undefined)
        this.probes.get(peer)?.delay.sample(Math.max(0, now - last - this.periodMs))
      this.probedAt.set(peer, now)
      this.received(peer, evt.data, v2)
      try {
        stream.send(v2 ? this.bytes(peer, evt.data.byteLength) : evt.data)
      } catch {
        // the stream is closing
      }
    })
    stream.addEventListener('remoteCloseWrite', () => {
      stream.close().catch(() => {})
    })
  }
}
