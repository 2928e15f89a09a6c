// Synchronous mode (issue 15): a commit on this node returns only once every live, caught-up
// peer has applied it. Each cycle observes the members and this node's walsenders, decides the
// set of peers to wait for (pure, below), and writes synchronous_standby_names when it changes.
// A peer leaves the set as soon as its arbiter is dead or its subscription stops streaming, so
// commits stall no longer than the failure detector takes; it comes back only once it streams
// with less than CATCH_UP_BYTES to apply, so a returning peer does not stall every commit while
// it catches up. A removal passes through '' (releases waiters at once, pg17-facts §6).
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type { LocalNode } from '../postgres/local.js'
import * as ss from '../postgres/sync-standbys.js'
import type { Member } from './membership.js'

const TICK_MS = 200
/** a returning peer joins the set once it has less than this to apply */
export const CATCH_UP_BYTES = 1024 * 1024

export interface SyncObservation {
  self: number
  /** every other member, with its failure-detector state */
  members: ReadonlyArray<Pick<Member, 'nodeId' | 'state' | 'joinState' | 'duplicate'>>
  senders: readonly ss.WalSender[]
  /** the peers waited for now */
  current: readonly number[]
}

export interface SyncDecision {
  want: number[]
  added: number[]
  removed: number[]
  /** live peers not waited for (catching up, or their subscription not streaming) */
  outside: number[]
  verdict: string
}

/** Which peers to wait for. Pure: no I/O. */
export function decideStandbys(o: SyncObservation): SyncDecision {
  const peers = o.members.filter(
    (m) => m.nodeId !== o.self && m.joinState !== 'removed' && !m.duplicate,
  )
  const streaming = new Map(
    o.senders.filter((s) => s.state === 'streaming').map((s) => [s.peer, s] as const),
  )
  const want: number[] = []
  const outside: number[] = []
  for (const m of peers) {
    const s = streaming.get(m.nodeId)
    const live = m.state !== 'dead' && s !== undefined
    const inSet = o.current.includes(m.nodeId)
    // in the set it stays while it lives; outside, it comes in once caught up
    if (live && (inSet || (s.lagBytes !== null && s.lagBytes <= CATCH_UP_BYTES)))
      want.push(m.nodeId)
    else if (m.state !== 'dead') outside.push(m.nodeId)
  }
  want.sort((a, b) => a - b)
  const added = want.filter((p) => !o.current.includes(p))
  const removed = o.current.filter((p) => !want.includes(p))
  const verdict =
    added.length + removed.length === 0
      ? `unchanged: waiting for ${want.length > 0 ? `nodes ${want.join(', ')}` : 'no peer'}`
      : [
          removed.length > 0 ? `stop waiting for nodes ${removed.join(', ')}` : '',
          added.length > 0 ? `wait for nodes ${added.join(', ')} (caught up)` : '',
        ]
          .filter(Boolean)
          .join('; ')
  return { want, added, removed, outside, verdict }
}

/**
 * Which write-write cycles this node breaks: an apply worker blocked by a local commit waiting
 * for the peers, seen in two cycles running (a moment's wait is no cycle), applying a node with
 * a lower id (the lower node's commit goes first; around any cycle of nodes some node applies
 * a lower one, so every cycle is broken, and only once). Pure.
 */
export function cyclesToBreak(
  self: number,
  now: readonly ss.BlockedApplier[],
  before: readonly ss.BlockedApplier[],
): ss.BlockedApplier[] {
  const seen = new Set(before.map((b) => `${b.applier}/${b.waiter}`))
  return now.filter((b) => b.peer < self && seen.has(`${b.applier}/${b.waiter}`))
}

export interface SyncModeInit {
  standbys: LocalNode['standbys']
  nodeId: number
  members: () => Member[]
  log: Logger
  /** how many peers a commit waits for (undefined: every live, caught-up one) */
  quorum?: number
}

export class SyncMode {
  private readonly init: SyncModeInit
  private readonly log: Logger
  private timer: Beat | undefined
  private running: Promise<void> | undefined
  private current: number[] = []
  /** synchronous_standby_names as last written (undefined: not written by this run yet) */
  private value: string | undefined
  private outsideNow: number[] = []
  private degradedSinceMs: number | undefined
  private degradedMs = 0
  private changes = 0
  private blocked: ss.BlockedApplier[] = []
  private cyclesBroken = 0
  private lastError: string | undefined

  constructor(init: SyncModeInit) {
    this.init = init
    this.log = init.log.child({ component: 'sync' })
  }

  async start(): Promise<void> {
    if (this.timer) return
    const { standbys, log } = { standbys: this.init.standbys, log: this.log }
    const value = await standbys.currentStandbys().catch(() => '')
    if (!ss.isOurs(value))
      log.warn(
        { was: value },
        'sync mode: replacing a synchronous_standby_names traktor did not set',
      )
    // an earlier run's set is where the hysteresis starts (a peer in it stays while it lives);
    // the value itself is written again by the first cycle: what this session reads may be
    // older than a reload just made (async mode's release of the same set, a moment before,
    // was read here as still in place and never written back; seen in CI)
    else this.current = [...value.matchAll(/"trktr_sub_(\d+)_\d+"/g)].map((m) => Number(m[1]))
    this.timer = onBeat(TICK_MS, () => void this.tick())
    void this.tick()
  }

  /** In async mode: clear a set an earlier sync-mode run left, so no commit waits for it. */
  static async release(standbys: LocalNode['standbys'], log: Logger): Promise<void> {
    const value = await standbys.currentStandbys()
    if (value === '' || !ss.isOurs(value)) return
    await standbys.setStandbys('')
    log.warn({ was: value }, 'async mode: cleared the synchronous standbys of an earlier sync run')
  }

  /** Stops the cycle and waits for one under way (nothing is written after stop returns). */
  async stop(): Promise<void> {
    this.timer?.stop()
    this.timer = undefined
    await this.running
  }

  /** For status and metrics. */
  view(): {
    standbys: number[]
    outside: number[]
    degraded: boolean
    degradedSeconds: number
    changes: number
    cyclesBroken: number
  } {
    const open = this.degradedSinceMs === undefined ? 0 : Date.now() - this.degradedSinceMs
    return {
      standbys: [...this.current],
      outside: [...this.outsideNow],
      degraded: this.degradedSinceMs !== undefined,
      degradedSeconds: (this.degradedMs + open) / 1000,
      changes: this.changes,
      cyclesBroken: this.cyclesBroken,
    }
  }

  healthReasons(): string[] {
    return this.outsideNow.map(
      (p) => `sync mode: commits do not wait for node ${p} (catching up, or not streaming)`,
    )
  }

  private tick(): void {
    this.running ??= this.cycle().finally(() => {
      this.running = undefined
    })
  }

  private async cycle(): Promise<void> {
    try {
      const { standbys, nodeId } = this.init
      const senders = await standbys.walSenders(nodeId)
      const members = this.init.members()
      const d = decideStandbys({ self: nodeId, members, senders, current: this.current })
      this.outsideNow = d.outside
      this.trackDegraded(d)
      await this.breakCycles()

      const value = ss.standbysValue(nodeId, d.want, this.init.quorum)
      if (d.added.length + d.removed.length === 0 && value === this.value) return
      // shrinking releases waiters only at the next status reply of the rest: go through ''
      if (d.removed.length > 0) await this.release()
      await standbys.setStandbys(value)
      this.current = d.want
      this.value = value
      this.lastError = undefined
      this.changes++
      this.log.warn(
        { standbys: d.want, added: d.added, removed: d.removed, value },
        `synchronous standbys: ${d.verdict.startsWith('unchanged') ? `now ${value}` : d.verdict}`,
      )
    } catch (err) {
      // one line per new failure (a missing grant fails every cycle)
      const msg = (err as Error).message
      if (msg !== this.lastError) this.log.error({ err: msg }, 'sync mode cycle failed')
      this.lastError = msg
    }
  }

  /**
   * A write-write cycle (two nodes' commits of the same rows, each waiting for the other's
   * apply worker, which waits for its row locks) never ends by itself. Setting the standbys to
   * '' releases this node's waiting commits at once (they return committed, without waiting
   * for the peers); the set is written back at once. Both versions then meet in the row-level
   * resolution, as two async commits would.
   */
  private async breakCycles(): Promise<void> {
    const { standbys, nodeId } = this.init
    const now = await standbys.blockedAppliers(nodeId)
    const cycles = cyclesToBreak(nodeId, now, this.blocked)
    this.blocked = now
    if (cycles.length === 0 || !this.value) return
    await this.release()
    await standbys.setStandbys(this.value)
    this.cyclesBroken++
    this.blocked = []
    this.log.warn(
      { cycles, standbys: this.value },
      `synchronous standbys: released this node's waiting commits: the apply worker for nodes ${[...new Set(cycles.map((c) => c.peer))].join(', ')} waited for a local commit that waited for them (a write-write cycle; the lower node's commit goes first)`,
    )
  }

  /** '' until the waiting commits are gone (the value written next must not hide it). */
  private async release(): Promise<void> {
    if (!(await this.init.standbys.releaseWaiters()))
      this.log.warn("synchronous standbys: commits still wait 2 s after the setting went to ''")
  }

  private trackDegraded(d: SyncDecision): void {
    const peers = this.init
      .members()
      .filter(
        (m) => m.nodeId !== this.init.nodeId && m.joinState !== 'removed' && !m.duplicate,
      ).length
    const degraded = d.want.length < Math.min(this.init.quorum ?? peers, peers)
    if (degraded && this.degradedSinceMs === undefined) this.degradedSinceMs = Date.now()
    if (!degraded && this.degradedSinceMs !== undefined) {
      this.degradedMs += Date.now() - this.degradedSinceMs
      this.degradedSinceMs = undefined
    }
  }
}
