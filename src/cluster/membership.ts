// Membership: every arbiter gossips its record (nodeId, peerId, PostgreSQL without password,
// version, join state, replicaset version) when it changes and every RECORD_REFRESH_MS; a peer
// gets it straight on every new connection and when it asks (the mesh's hello). A connected
// member is heard every heartbeatMs by the liveness probe (a byte each way; liveness.ts), which
// asks a peer held dead or unknown for its record; the detector turns silence and closed
// connections into suspect and dead. In a sparse mesh a member not connected here is judged by
// what its probers say (rumors.ts). Two peers claiming one nodeId are both duplicate, loudly.
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type {
  MembershipHeartbeat as Heartbeat,
  MembershipSuspicion as Suspicion,
} from '../mesh/codec.js'
import type { GossipMessage } from '../mesh/types.js'
import type { CommitSetting } from '../postgres/cluster-state.js'
import type { Timings } from './detector.js'
import { evaluateEveryMs, heardAfterStall, type MemberState, stableAfterMs } from './detector.js'
import type { MeshPort, PeerEvent } from './port.js'
import {
  live,
  markDuplicates,
  ownRecord,
  RECORD_REFRESH_MS,
  recordDigest,
  relayable,
  stale,
} from './record.js'
import { byConnection, judgeMember, type Rumor, Suspicions, stillClosed } from './rumors.js'

export { RECORD_REFRESH_MS, recordDigest, stale } from './record.js'

/** copying: a new node copying the cluster's data (join.ts); not asked in proposals */
export type JoinState = 'joining' | 'copying' | 'ready' | 'removed'

export interface Member {
  nodeId: number
  peerId: string
  postgres: string
  version: string
  incarnation: number
  joinState: JoinState
  /** while the member copies the cluster's data: how far (0-100) */
  joinPercent: number | undefined
  replicasetVersion: number
  /** the newest change the member knows of in the roster of removed nodes */
  rosterVersion: number
  /** the member's arbiter reaches its PostgreSQL (as it last said) */
  postgresUp: boolean
  /** its commit mode as it last said (absent from old peers) */
  commit?: CommitSetting
  state: MemberState
  lastHeardMs: number
  /** when news of it last came (lastHeardMs, moved past this process's stalls, may be later) */
  heardMs?: number
  /** since when it has been alive without a break (flap damping) */
  aliveSinceMs: number | undefined
  flaps: number
  duplicate: boolean
}

export interface SelfView {
  joinState: JoinState
  joinPercent?: number
  replicasetVersion: number
  rosterVersion: number
  postgresUp: boolean
  commit?: CommitSetting
}

export interface MembershipInit {
  mesh: MeshPort
  nodeId: number
  postgres: string
  version: string
  timings: Timings
  log: Logger
  self: () => SelfView
  now?: () => number
  /** told whenever a member's state, join state or replicaset version changes */
  onChange?: (m: Member, previous: MemberState | undefined) => void
}

/** A timer this much late means this process was stalled (SIGSTOP, a blocked event loop). */
const STALL_MS = 100

interface Record extends Member {
  disconnectedAtMs?: number
  /** the newest heartbeat taken from it: its counter (or, from old peers, its sender's clock) */
  sentAt: number
  seq: number | undefined
  /** recordDigest of the newest record taken from it */
  digest: number
  /** a sparse mesh: what is said of it, if this node does not probe it (rumors.ts) */
  rumor?: Rumor
  /** the newest record taken from it as it signed it, to pass on (a sparse mesh's hello) */
  signed?: Heartbeat
}

export class Membership {
  private readonly init: MembershipInit
  private readonly log: Logger
  private readonly byPeer = new Map<string, Record>()
  /** per peer: the digest of its record its last probe carried */
  private readonly heardDigests = new Map<string, number>()
  private readonly incarnation: number
  /** this run's heartbeat counter: a receiver takes only newer ones (a clock may step back) */
  private seq = 0
  private timer: Beat | undefined
  /** when the last heartbeat went out, and what it said of this node */
  private lastAnnounce = { atMs: -Infinity, said: '' }
  /** when the tick last ran (monotonic): a late tick is this process's stall, not the peers' */
  private lastTickAt = 0
  private selfDuplicateLogged = false
  /** this node's record's digest as of the last tick (every probe carries it; 2/s per peer) */
  private ownDigest = 0
  /** the record last numbered (a change goes out at the next tick, renumbered) */
  private lastRecord: Heartbeat | undefined
  /** what start() subscribed to, released by stop() */
  private readonly disposers: Array<() => void> = []
  private readonly now: () => number
  private readonly suspicions: Suspicions

  constructor(init: MembershipInit) {
    this.init = init
    this.log = init.log.child({ component: 'membership' })
    this.now = init.now ?? Date.now
    this.incarnation = Date.now()
    this.suspicions = new Suspicions({
      mesh: init.mesh,
      log: this.log,
      now: this.now,
      own: () => ({ incarnation: this.incarnation, lastSeq: this.seq - 1 }),
      refute: () => void this.announce(),
    })
  }

  start(): void {
    if (this.timer) return
    const { mesh } = this.init
    this.disposers.push(
      mesh.subscribe('membership', (m) => this.onHeartbeat(m)),
      mesh.onPeer((peerId, event) => this.onPeerEvent(peerId, event)),
    )
    const records = mesh.recordRequests?.({
      wants: (peerId) => this.wants(peerId),
      // a sparse mesh's new connection gets the record as it went out (not signed again)
      record: (fresh) =>
        (fresh || mesh.sparse?.() !== true ? undefined : this.lastRecord) ?? this.heartbeat(),
      digest: () => this.ownDigest,
      heardDigest: (peerId, d) => {
        if (d !== 0) this.heardDigests.set(peerId, d)
      },
      // a sparse mesh's ring: members held dead are left out (their neighbours dial the next)
      memberPeerIds: () => [...this.byPeer.values()].filter(live).map((r) => r.peerId),
      memberCount: () => this.byPeer.size,
      relayable: () => [...this.byPeer.values()].flatMap((r) => (relayable(r) ? [r.signed] : [])),
      known: (peerId) => this.byPeer.has(peerId),
    })
    if (records) this.disposers.push(records)
    this.lastTickAt = performance.now()
    this.timer = onBeat(evaluateEveryMs(this.init.timings), () => this.tick())
    this.tick()
  }

  stop(): void {
    this.timer?.stop()
    this.timer = undefined
    for (const off of this.disposers.splice(0)) off()
  }

  /**
   * Every other member, duplicates flagged. Per nodeId: every live claim, or else the most
   * recent dead one; a dead claim of our own nodeId (a stopped impostor) is left out.
   */
  members(): Member[] {
    const groups = new Map<number, Record[]>()
    for (const r of this.byPeer.values()) groups.set(r.nodeId, [...(groups.get(r.nodeId) ?? []), r])
    const out: Record[] = []
    for (const [nodeId, group] of groups) {
      const live = group.filter((r) => r.state !== 'dead')
      if (live.length > 0) out.push(...live)
      else if (nodeId !== this.init.nodeId) {
        out.push(group.reduce((a, b) => (a.lastHeardMs >= b.lastHeardMs ? a : b)))
      }
    }
    return out
      .map(({ disconnectedAtMs: _, sentAt: __, seq: ___, digest: ____, rumor, signed, ...m }) => m)
      .sort((a, b) => a.nodeId - b.nodeId)
  }

  /** Members usable for cluster actions: not duplicate, not removed. */
  active(): Member[] {
    return this.members().filter(
      (m) => !m.duplicate && m.joinState !== 'removed' && m.state !== 'dead',
    )
  }

  /** The member behind a peer id, if it announced itself. */
  byPeerId(peerId: string): Member | undefined {
    return this.byPeer.get(peerId)
  }

  /** Alive, not duplicate, and alive for long enough to act on (flap damping). */
  isStable(m: Member): boolean {
    return (
      m.state === 'alive' &&
      !m.duplicate &&
      m.aliveSinceMs !== undefined &&
      this.now() - m.aliveSinceMs >= stableAfterMs(this.init.timings)
    )
  }

  /** Alive, never interrupted since first heard: no damping to copy from (a new node's peers). */
  isUnbroken(m: Member): boolean {
    return m.state === 'alive' && !m.duplicate && m.flaps === 0
  }

  /** Is our own nodeId claimed by another live peer? */
  selfDuplicated(): boolean {
    return [...this.byPeer.values()].some(
      (m) => m.nodeId === this.init.nodeId && m.state !== 'dead',
    )
  }

  private tick(): void {
    const now = this.now()
    const at = performance.now()
    const late = at - this.lastTickAt - evaluateEveryMs(this.init.timings)
    this.lastTickAt = at
    if (late > STALL_MS) {
      // this process stood still: its peers' silence in that time is not theirs (a peer that
      // holds this node dead by now asks for its record through the liveness probe)
      for (const r of this.byPeer.values()) {
        const refusedAtMs = this.init.mesh.refusedAt?.(r.peerId)
        if (r.state !== 'dead') r.lastHeardMs = heardAfterStall({ ...r, refusedAtMs }, late, now)
      }
    }
    const said = JSON.stringify(this.init.self())
    this.ownDigest = recordDigest(this.current())
    if (now - this.lastAnnounce.atMs >= RECORD_REFRESH_MS || said !== this.lastAnnounce.said) {
      void this.announce()
    }
    for (const r of this.byPeer.values()) this.evaluate(r, now)
    this.suspicions.repeat()
    this.markDuplicates()
  }

  private async announce(): Promise<void> {
    this.lastAnnounce = { atMs: this.now(), said: JSON.stringify(this.init.self()) }
    await this.init.mesh
      .publish('membership', this.heartbeat())
      .catch((err: Error) => this.log.debug({ err: err.message }, 'heartbeat not sent'))
  }

  /**
   * Ask a peer for its record: unknown, held dead (only its record says what it is now), or
   * its probe's digest is not that of the record held (a change whose gossip did not reach us).
   */
  private wants(peerId: string): boolean {
    const r = this.byPeer.get(peerId)
    if (r === undefined || r.state === 'dead') return true
    const heard = this.heardDigests.get(peerId)
    return heard !== undefined && heard !== r.digest
  }

  /** This node's record as of now, numbered (a receiver takes only newer ones). */
  private heartbeat(): Heartbeat {
    this.lastRecord = { ...this.current(), sentAt: Date.now(), seq: this.seq++ }
    return this.lastRecord
  }

  /** This node's record without its number. */
  private current(): Omit<Heartbeat, 'sentAt' | 'seq'> {
    return ownRecord(this.init, this.init.self(), this.incarnation)
  }

  private onHeartbeat(m: GossipMessage): void {
    if ((m.payload as { kind?: string }).kind === 'suspicion') {
      const r = this.byPeer.get((m.payload as Suspicion).of)
      if (this.suspicions.heard(m.payload as Suspicion, r) && r) this.evaluate(r, this.now())
      return
    }
    const hb = m.payload as Heartbeat
    const now = this.now()
    const prev = this.byPeer.get(m.from)
    // a heartbeat relayed late, or replayed, is no news of its sender: only a newer one (by the
    // sender's own clock, within one run of it) or one of a later run counts
    if (prev && stale(hb, prev)) {
      if (prev.rumor !== undefined && prev.rumor.seq >= (hb.seq ?? 0)) this.suspicions.doubted(prev)
      return
    }
    // judged by its link, which closed and is down: its record came relayed, no news that it runs
    // (a partition's late relay held it alive for good, or flapping as it left and rejoined the ring)
    const relayed = prev?.disconnectedAtMs !== undefined && stillClosed(this.init.mesh, m.from)
    // what the heartbeat says of its sender, as of now
    const said = {
      nodeId: hb.nodeId,
      postgres: hb.postgres,
      version: hb.version,
      incarnation: hb.incarnation,
      joinState: hb.state,
      joinPercent: hb.joinPercent,
      replicasetVersion: hb.replicasetVersion,
      rosterVersion: hb.rosterVersion ?? 0,
      postgresUp: hb.postgresUp ?? true,
      lastHeardMs: relayed ? prev.lastHeardMs : now,
      heardMs: relayed ? prev.heardMs : now,
      sentAt: hb.sentAt,
      seq: hb.seq,
      digest: recordDigest(hb),
    }
    const r: Record = prev ?? {
      ...said,
      peerId: m.from,
      state: 'alive',
      aliveSinceMs: now,
      flaps: 0,
      duplicate: false,
    }
    const changed =
      !prev ||
      prev.joinState !== said.joinState ||
      prev.replicasetVersion !== said.replicasetVersion ||
      prev.rosterVersion !== said.rosterVersion ||
      prev.postgresUp !== said.postgresUp ||
      prev.commit?.changed !== hb.commit?.changed ||
      prev.nodeId !== said.nodeId
    if (prev && prev.incarnation !== hb.incarnation)
      this.log.info({ node: hb.nodeId }, 'member restarted')
    Object.assign(r, said)
    if (hb.commit) r.commit = hb.commit
    else delete r.commit
    if (!stillClosed(this.init.mesh, m.from)) delete r.disconnectedAtMs
    if (r.rumor !== undefined && r.rumor.seq < (hb.seq ?? 0)) delete r.rumor
    if (hb.sig !== undefined) r.signed = hb
    this.byPeer.set(m.from, r)
    if (!prev)
      this.log.info({ node: hb.nodeId, peer: m.from, state: hb.state }, 'member joined the mesh')
    const before = this.evaluate(r, now)
    if (changed && before === r.state) this.init.onChange?.(r, before)
    this.markDuplicates()
  }

  private onPeerEvent(peerId: string, event: PeerEvent): void {
    // a peer that connects gets this node's record straight away (the mesh's hello), and asks
    // again through the liveness probe while it does not know it: nothing is flooded for it
    if (event === 'subscribed') return
    const r = this.byPeer.get(peerId)
    if (!r) return
    if (event === 'disconnect') r.disconnectedAtMs = this.now()
    else if (event === 'connect' && byConnection(this.init.mesh, peerId)) {
      // a member not probed here is heard of by its connection: connected again, it is back;
      // held dead by rumor, it is told so again, to answer with a newer record (a partition)
      delete r.disconnectedAtMs
      this.suspicions.doubted(r)
    }
    this.evaluate(r, this.now())
  }

  /** Re-detect one member; returns the state it had before. */
  private evaluate(r: Record, now: number): MemberState {
    const before = r.state
    const {
      state,
      byRumor,
      byConnection: closedOnly,
    } = judgeMember(r, now, this.init.mesh, this.init.timings, this.byPeer.size + 1)
    r.state = state
    if (r.state !== 'alive') r.aliveSinceMs = undefined
    else if (r.aliveSinceMs === undefined) r.aliveSinceMs = now
    if (before !== r.state) {
      if (r.state === 'alive' && before !== 'alive') r.flaps++
      const level = r.state === 'alive' ? 'info' : 'warn'
      this.log[level](
        {
          node: r.nodeId,
          peer: r.peerId,
          from: before,
          to: r.state,
          ...(byRumor ? { byRumor } : {}),
        },
        'member state changed',
      )
      // only "dead" is said: a suspect of a moment (a late probe on a busy machine) said to
      // every node, and answered by every node's refutation, fed the very saturation behind it
      if (!byRumor && !closedOnly && r.state === 'dead') this.suspicions.say(r, r.state)
      if (r.state === 'alive') this.suspicions.alive(r.peerId)
      this.init.onChange?.(r, before)
    }
    return before
  }

  private markDuplicates(): void {
    markDuplicates(this.byPeer.values(), this.init.nodeId, this.log)
    if (this.selfDuplicated() && !this.selfDuplicateLogged) {
      this.selfDuplicateLogged = true
      this.log.error({ node: this.init.nodeId }, 'another arbiter claims this node id')
    } else if (!this.selfDuplicated()) this.selfDuplicateLogged = false
  }
}
