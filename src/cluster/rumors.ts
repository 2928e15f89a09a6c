// In a sparse mesh (src/mesh/overlay.ts) a node is connected to a few members only; the others
// it does not probe, and it judges them as SWIM does: alive while no member says otherwise.
// The members connected to one (its ring neighbours, its bootstrap peer) probe it; when one of
// them finds it suspect or dead, it gossips a suspicion naming the record it holds (run and
// seq); every node that is not connected to that member takes it, and the member itself, if
// it is alive and hears it, answers with a newer record, which clears it everywhere. A suspect
// that is not cleared is dead after the same time as a silent connected member. Pure rules
// here; membership.ts holds the records. Per member and second the mesh carries nothing while
// all is well: a suspicion goes out only when a state changes (a death found here is said again
// a few times in the half minute after: gossip is not kept for a node it did not reach).
import type { Logger } from '../log.js'
import type { MembershipSuspicion as Suspicion } from '../mesh/codec.js'
import { detect, type MemberState, silenceTimings, type Timings } from './detector.js'
import type { MeshPort } from './port.js'
import { RECORD_REFRESH_MS } from './record.js'

/** a suspicion held here is said again at most this often when its member is heard of alive */
const REPEAT_SUSPICION_MS = 2000
/** a death this node found itself is said again this often, for this long (see Suspicions.repeat) */
export const RETELL_EVERY_MS = 3000
export const RETELL_FOR_MS = 30_000

/** What this node has heard said of a member it does not probe itself. */
export interface Rumor {
  state: 'suspect' | 'dead'
  /** the member's record (seq) the suspicion was about */
  seq: number
  /** when it was first heard at this state */
  atMs: number
  /** when this node last said it again (membership.ts: a member heard of alive elsewhere) */
  repeatedAtMs?: number
}

/**
 * A member this node does not probe: dead or suspect as said of its current record, suspect
 * turning dead after the time a silent member takes; else alive, unless its record has not
 * been refreshed for `silentDeadMs` (every member sends it again every few minutes).
 */
export function judgeByRumor(
  r: { rumor?: Rumor | undefined; seq?: number | undefined; lastHeardMs: number },
  now: number,
  t: Timings,
  silentDeadMs: number,
): MemberState {
  const { rumor } = r
  if (rumor !== undefined && rumor.seq >= (r.seq ?? 0)) {
    if (rumor.state === 'dead') return 'dead'
    return now - rumor.atMs >= t.deadAfterMs - t.suspectAfterMs ? 'dead' : 'suspect'
  }
  return now - r.lastHeardMs >= silentDeadMs ? 'dead' : 'alive'
}

/**
 * The rumor held after hearing a suspicion of the member's record `seq`: a suspicion of an
 * older record is no news (the member has answered it), dead outranks suspect.
 */
export function withSuspicion(
  held: Rumor | undefined,
  s: Pick<Suspicion, 'seq' | 'state'>,
  recordSeq: number,
  now: number,
): Rumor | undefined {
  if (s.seq < recordSeq) return held
  if (held !== undefined && held.seq === s.seq && (held.state === 'dead' || s.state === held.state))
    return held
  if (held !== undefined && held.seq > s.seq) return held
  return { state: s.state, seq: s.seq, atMs: now }
}

/** What the suspicions need of a member's record (membership.ts holds them). */
export interface Suspected {
  peerId: string
  incarnation: number
  seq: number | undefined
  lastHeardMs?: number
  /** when news of it last came (lastHeardMs without this process's stalls) */
  heardMs?: number
  disconnectedAtMs?: number
  rumor?: Rumor
}

export interface SuspicionsInit {
  mesh: Pick<MeshPort, 'peerId' | 'publish' | 'answeredAt' | 'sparse' | 'rumors' | 'probes'>
  log: Logger
  now: () => number
  /** this node's run, and the seq of the record it sent last */
  own(): { incarnation: number; lastSeq: number }
  /** sends this node's record again (a newer one: the answer to a suspicion of it) */
  refute(): void
}

/** The suspicions a sparse mesh's node says and hears (the rules above). */
export class Suspicions {
  /**
   * the deaths this node found itself and still tells: of which run and record of the member
   * (as they were when found: a member back in a new run is not said dead again), when first
   * and last said
   */
  private readonly told = new Map<string, { r: Suspected; firstMs: number; lastMs: number }>()

  constructor(private readonly init: SuspicionsInit) {}

  /**
   * Tells the others that this node holds a member it probes suspect or dead. In a full mesh
   * that probes its ring only, its probers say it; the others take their word (rumor).
   */
  say(r: Suspected, state: 'suspect' | 'dead'): void {
    if (!this.rumors() || this.init.mesh.probes?.(r.peerId) === false) return
    if (state === 'dead') {
      const now = this.init.now()
      const of = { peerId: r.peerId, incarnation: r.incarnation, seq: r.seq }
      this.told.set(r.peerId, { r: of, firstMs: now, lastMs: now })
    }
    this.publish(r, state)
  }

  private rumors(): boolean {
    const { mesh } = this.init
    return mesh.rumors !== undefined ? mesh.rumors() : mesh.sparse?.() === true
  }

  private publish(r: Suspected, state: 'suspect' | 'dead', seq = r.seq ?? 0): void {
    const { mesh, log } = this.init
    if (!this.rumors()) return
    const of = { of: r.peerId, incarnation: r.incarnation, seq, state }
    const s: Suspicion = { v: 1, kind: 'suspicion', peerId: mesh.peerId, ...of }
    mesh
      .publish('membership', s)
      .catch((err: Error) => log.debug({ err: err.message }, 'suspicion not sent'))
  }

  /** A member says another is suspect or dead; true: the record's rumor changed (judge it). */
  heard(s: Suspicion, r: Suspected | undefined): boolean {
    const { mesh, own, refute, now } = this.init
    if (s.of === mesh.peerId) {
      // of this node, which is alive: a newer record says so (unless one went out since)
      const me = own()
      if (s.incarnation === me.incarnation && s.seq >= me.lastSeq) refute()
      return false
    }
    if (r === undefined || r.incarnation !== s.incarnation) return false
    // a member this node probes itself: its own evidence decides
    const probed = mesh.probes?.(r.peerId) !== false && mesh.answeredAt?.(r.peerId) !== undefined
    if (r.disconnectedAtMs === undefined && probed) return false
    // its link here closed after its record was last heard: that record is no answer to a
    // death said since, whatever its seq (a member numbers its record anew for each peer that
    // asks for it through the probe, so the records held of it differ from node to node).
    // Heard, not lastHeardMs: this process's stalls move that past the close (a partition's
    // side held a member alive for good, every prober's word naming an older record)
    const heard = r.heardMs ?? r.lastHeardMs ?? 0
    const shut = r.disconnectedAtMs !== undefined && r.disconnectedAtMs >= heard
    const of = shut ? { ...s, seq: Math.max(s.seq, r.seq ?? 0) } : s
    const rumor = withSuspicion(r.rumor, of, r.seq ?? 0, now())
    if (rumor === undefined || rumor === r.rumor) return false
    r.rumor = rumor
    return true
  }

  /**
   * The deaths this node found itself are said again every few seconds for half a minute.
   * Gossip is not kept: a node that no gossip reached when a death was said (a partition's side
   * re-forming its ring round it, a connection whose gossip stream was not open yet) heard
   * nothing, and no state changes anywhere to say it again. A member that is alive answers any
   * of them with a newer record; `alive` ends them.
   */
  repeat(): void {
    const now = this.init.now()
    for (const [peerId, t] of this.told) {
      if (now - t.firstMs > RETELL_FOR_MS) this.told.delete(peerId)
      else if (now - t.lastMs >= RETELL_EVERY_MS) {
        t.lastMs = now
        this.publish(t.r, 'dead')
      }
    }
  }

  /** A member held dead here is alive again: its death is no longer told. */
  alive(peerId: string): void {
    this.told.delete(peerId)
  }

  /**
   * A record passed on by a peer that holds it alive, of a member said dead or suspect here (a
   * healed partition: the member never heard it was suspected): say so again, for the member to
   * answer with a newer record. At most every few seconds per member.
   */
  doubted(r: Suspected): void {
    const { rumor } = r
    const now = this.init.now()
    if (rumor === undefined || now - (rumor.repeatedAtMs ?? 0) < REPEAT_SUSPICION_MS) return
    rumor.repeatedAtMs = now
    // of the record it was said of (a newer one than held here, when the member answered an
    // earlier suspicion meanwhile): the member answers only a suspicion of its latest record
    this.publish(r, rumor.state, Math.max(r.seq ?? 0, rumor.seq))
  }
}

/**
 * Whether this member is judged by its connection and by rumor, not by its probe: a full mesh
 * that probes its ring only (overlay.ts probeEdges), the member not probed here or not heard on
 * its probe yet (its ring edge is new: what was heard before is old).
 */
export function byConnection(
  mesh: Pick<MeshPort, 'sparse' | 'rumors' | 'probes' | 'met'>,
  peerId: string,
): boolean {
  if (mesh.sparse?.() === true || mesh.rumors?.() !== true) return false
  return mesh.probes?.(peerId) === false || mesh.met?.(peerId) === false
}

/**
 * Whether a member's closed connection still stands though a record of it was heard: a member
 * judged by its connection is back only when connected again. Its record relayed by a peer
 * after the connection closed (its latest, which had missed this node) says nothing of whether
 * it still runs; taken as news, the closed connection was forgotten and the member judged by
 * its probers' word, which named an older record: alive here for good.
 */
export function stillClosed(
  mesh: Pick<MeshPort, 'sparse' | 'rumors' | 'probes' | 'met' | 'connectedPeers'>,
  peerId: string,
): boolean {
  return byConnection(mesh, peerId) && !mesh.connectedPeers().includes(peerId)
}

/** What a member's judgement reads of it (membership.ts's record). */
interface Judged {
  peerId: string
  state: MemberState
  lastHeardMs: number
  /** when news of it last came: lastHeardMs without this process's stalls */
  heardMs?: number | undefined
  disconnectedAtMs?: number | undefined
  rumor?: Rumor | undefined
  seq?: number | undefined
}

/**
 * A member's state, and how it was found: by rumor (what its probers said), by a link to it
 * that is not one of its ring's edges (`byConnection`: refused at its address once the link
 * closed), or by this node's own watch of it (a ring edge: its probe, its link's close) — the
 * last alone is said on (Suspicions.say): the members that do not watch it take its probers'
 * word, whatever their own links to it do.
 */
export interface Judgement {
  state: MemberState
  byRumor: boolean
  byConnection?: true
}

/**
 * A member's state now from what the mesh knows of it, in a mesh of `members`: by the
 * failure detector (detector.ts) when this node probes it, dials it or saw its connection
 * close; by rumor (judgeByRumor) when a sparse mesh does none of these. A liveness probe's
 * answer is news of it: `r.lastHeardMs` moves up to it (a dead member comes back only by a
 * heartbeat of its own, which says what it is now).
 */
export function judgeMember(
  r: Judged,
  now: number,
  mesh: Pick<
    MeshPort,
    | 'answeredAt'
    | 'dialFailedAt'
    | 'refusedAt'
    | 'listeningAt'
    | 'knocking'
    | 'sparse'
    | 'met'
    | 'probes'
    | 'rumors'
  >,
  timings: Timings,
  members: number,
): Judgement {
  const answered = mesh.answeredAt?.(r.peerId)
  if (answered !== undefined && r.state !== 'dead') {
    if (answered > (r.heardMs ?? r.lastHeardMs)) r.heardMs = Math.min(answered, now)
    if (answered > r.lastHeardMs) r.lastHeardMs = Math.min(answered, now)
  }
  const sparse = mesh.sparse?.() === true
  const silence = silenceTimings(timings, members)
  // a full mesh watching its ring only: a closed connection not refused at its address (a
  // timeout under load, not a process gone) is judged as patiently as silence
  const ringOnly = !sparse && mesh.rumors?.() === true
  const closed = ringOnly ? silence : timings
  // a member whose link here is not one of its ring's edges (overlay.ts probeEdges: a sparse
  // mesh's link to its bootstrap peer or one a call made; any other link of a full mesh past its
  // probe-all size): the link is no evidence, but for a refusal at its address after it closed
  // (its process gone); else what its probers say (rumor). Such a member is not probed, so not
  // heard on the link; judged by its close, a call's link closing was a death here, and a
  // 64-member full mesh's start (hundreds of links closed by timeouts and crossing dials, not
  // made again for seconds on two saturated cores) held members suspect for most of a minute
  const refused = mesh.refusedAt?.(r.peerId)
  const rumorsHere = mesh.rumors !== undefined ? mesh.rumors() : sparse
  if (rumorsHere && mesh.probes?.(r.peerId) === false) {
    const shut = r.disconnectedAtMs
    const gone =
      refused !== undefined && shut !== undefined && refused >= shut && refused >= r.lastHeardMs
    // held dead here already, nothing heard of it since its link closed: still dead (a member
    // this node found dead on its ring edge leaves the ring, which is made of live members).
    // Heard, not lastHeardMs: a stall of this process moves that past the close, and the
    // member went dead and alive in turn every 250 ms for good (a ring-probes failure's logs)
    const still = r.state === 'dead' && shut !== undefined && shut >= (r.heardMs ?? r.lastHeardMs)
    if (gone || still) return { state: 'dead', byRumor: false, byConnection: true }
    return { state: judgeByRumor(r, now, timings, 2 * RECORD_REFRESH_MS), byRumor: true }
  }
  // a full mesh past its probe-all size: a ring edge not heard on its probe yet (new: what was
  // heard before is old) is judged by rumor while its connection stands; once the connection
  // closed, by the detector (closed and refused at its address: a killed member, found at
  // once), the connection having stood until then
  if (byConnection(mesh, r.peerId)) {
    if (r.disconnectedAtMs === undefined)
      return { state: judgeByRumor(r, now, timings, 2 * RECORD_REFRESH_MS), byRumor: true }
    // its port found open after the close (the knock): its process runs, so the close is
    // silence from then, not a close
    const runs = listening(r, mesh) && (refused === undefined || refused < r.disconnectedAtMs)
    const e = {
      lastHeardMs: Math.max(r.lastHeardMs, r.disconnectedAtMs),
      ...(runs ? {} : { disconnectedAtMs: r.disconnectedAtMs }),
      ...(refused === undefined ? {} : { refusedAtMs: refused }),
    }
    return { state: detect(e, now, closed, silence), byRumor: false }
  }
  // a full mesh's member known from a record passed on (a start: hello.ts) and not heard on
  // the probe here yet in this run: alive by that record, until a dial of it fails (a
  // connection of a moment closed meanwhile is no news: two dials that crossed); once heard,
  // its own evidence decides
  if (!sparse && mesh.met?.(r.peerId) === false) {
    const failed = mesh.dialFailedAt?.(r.peerId)
    if (failed === undefined || failed <= r.lastHeardMs)
      return { state: judgeByRumor(r, now, timings, 2 * RECORD_REFRESH_MS), byRumor: true }
    return { state: detect({ lastHeardMs: failed }, now, timings, silence), byRumor: false }
  }
  // a sparse mesh dials its ring neighbours: a dial failing since `failed` counts as silence
  // from then (a saturated node's handshakes time out: that alone is no evidence of death)
  const failed = sparse ? mesh.dialFailedAt?.(r.peerId) : undefined
  const failing =
    failed !== undefined &&
    failed > r.lastHeardMs &&
    answered === undefined &&
    r.disconnectedAtMs === undefined // a closed connection is stronger evidence (detector.ts)
  // a sparse mesh's member not probed here and not failed here: judged by rumor
  if (sparse && r.disconnectedAtMs === undefined && answered === undefined && !failing)
    return { state: judgeByRumor(r, now, timings, 2 * RECORD_REFRESH_MS), byRumor: true }
  const gone = refused !== undefined && refused >= (r.disconnectedAtMs ?? Infinity)
  // a sparse mesh's member never heard on its probe here whose connection closed (one of a
  // moment: dials that crossed, a handshake that timed out): silence from the close, as a
  // failing dial is — judged against its record's age, such a close said running members dead
  // to every node (a 64-member start: ~2,000 times, each refuted)
  const unmet = sparse && r.disconnectedAtMs !== undefined && mesh.met?.(r.peerId) === false
  const fromClose = unmet && !gone
  const evidence = {
    lastHeardMs: failing
      ? failed
      : fromClose
        ? Math.max(r.lastHeardMs, r.disconnectedAtMs ?? 0)
        : r.lastHeardMs,
    ...(r.disconnectedAtMs === undefined || fromClose || (!gone && listening(r, mesh))
      ? {}
      : { disconnectedAtMs: r.disconnectedAtMs }),
    ...(refused === undefined ? {} : { refusedAtMs: refused }),
  }
  return { state: detect(evidence, now, closed, silence), byRumor: false }
}

/**
 * Whether the member's port still listened after its connection closed (a knock, knock.ts):
 * its process runs, so the close says only that it or this node fell silent (on a loaded
 * machine a busy process's connections are closed for silence; a 64-member start on two cores
 * said running members dead thousands of times, each refuted): judged as silence, as patiently
 * as silence is past 16 members. With up to 16 members silence turns dead as soon as a close
 * did (deadAfterMs). A knock still out counts as listening: a killed member's port refuses within
 * a millisecond, so the wait costs finding it nothing, while a running one's answer, under load,
 * came after the close was judged (at 64 members hundreds of members suspect for a moment).
 */
function listening(r: Judged, mesh: Pick<MeshPort, 'listeningAt' | 'knocking'>): boolean {
  const open = mesh.listeningAt?.(r.peerId)
  if (r.disconnectedAtMs === undefined) return false
  return (open !== undefined && open >= r.disconnectedAtMs) || mesh.knocking?.(r.peerId) === true
}
