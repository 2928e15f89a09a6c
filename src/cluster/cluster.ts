// Mesh mode's cluster service: membership, the automatic mesh, two-phase proposals, conflict
// events and the fan-out behind /v1/cluster/* and /rpc. Its parts are built in cluster-parts.ts;
// here they start in dependency order and stop in reverse.
import { ConflictError } from '../errors.js'
import { stopInOrder } from '../lifecycle.js'
import type { Logger } from '../log.js'
import type { ConflictEvent } from '../mesh/codec.js'
import type { MeshIsolation, RpcHandler } from '../mesh/types.js'
import type * as cs from '../postgres/cluster-state.js'
import type { RelationName } from '../postgres/ident.js'
import type { KeptValues } from './check-kept.js'
import type { CheckNode } from './check-node.js'
import type { CheckAnswer, Checker, RepairAnswer } from './checker.js'
import type { ClusterHistory, ClusterHistoryEntry } from './cluster-history.js'
import { FANOUT_TIMEOUT_MS } from './cluster-ports.js'
import type { ClusterStatus } from './cluster-status.js'

export type { RosterChange } from './roster-ops.js'

import { buildParts, type ClusterInit } from './cluster-parts.js'
import type { CommitAnswer, CommitMode } from './commit-mode.js'
import { settleJoined } from './copy-plan.js'
import { type DdlAnswer, type DdlRequest, runDdl } from './ddl.js'
import { isolatedAfterMs } from './detector.js'
import { combine, type IsolationWatch, isolationReason, memberReach } from './isolation.js'
import { memberView } from './join-decide.js'
import type { Membership } from './membership.js'
import { fanOut } from './port.js'
import type { Outcome, Proposals } from './proposals.js'
import type { Reconciler } from './reconcile.js'
import type { Recovery } from './recovery.js'
import type { RosterChange, RosterOps } from './roster-ops.js'
import { rpcHandler } from './rpc-handlers.js'
import type { SequenceStriper } from './sequences.js'
import type { SlotHealer } from './slot-healer.js'
import type { Steps } from './steps.js'

export type { ClusterInit }

export class Cluster {
  readonly membership: Membership
  readonly proposals: Proposals
  readonly reconciler: Reconciler
  readonly striper: SequenceStriper
  private readonly steps: Steps
  private readonly recovery: Recovery
  private readonly isolationWatch: IsolationWatch
  readonly checker: Checker
  private readonly kept: KeptValues
  /** the commit mode (async, sync) and, while sync, its standby keeper */
  readonly commitMode: CommitMode
  private readonly checkNode: CheckNode
  private readonly healer: SlotHealer
  private handler: RpcHandler | undefined
  private readonly init: ClusterInit
  private readonly log: Logger
  private readonly conflicts: ClusterHistory
  private readonly view: ClusterStatus
  private readonly roster: RosterOps
  private started = false
  /** takes the conflict-event handler off the mesh (stop) */
  private offConflicts: (() => void) | undefined

  constructor(init: ClusterInit) {
    this.init = init
    this.log = init.log.child({ component: 'cluster' })
    const p = buildParts(init, this.log, {
      isolation: () => this.isolation(),
      healthReasons: () => this.healthReasons(),
      resync: (node) => this.resync(node),
      rpc: () => this.rpc(),
    })
    this.conflicts = p.conflicts
    this.membership = p.membership
    this.striper = p.striper
    this.reconciler = p.reconciler
    this.steps = p.steps
    this.proposals = p.proposals
    this.recovery = p.recovery
    this.isolationWatch = p.isolationWatch
    this.checkNode = p.checkNode
    this.checker = p.checker
    this.kept = p.kept
    this.healer = p.healer
    this.commitMode = p.commitMode
    this.roster = p.roster
    this.view = p.view
  }

  private rpc(): RpcHandler {
    if (!this.handler) throw new Error('the cluster service is not started')
    return this.handler
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    const { mesh } = this.init
    // a conflict event must come from the node the sender announced itself as
    mesh.setClaimCheck(
      'conflicts',
      (from, payload) =>
        this.membership.byPeerId(from)?.nodeId === (payload as { nodeId?: number }).nodeId,
    )
    this.offConflicts = mesh.subscribe('conflicts', (m) =>
      this.conflicts.heard(m.payload as ConflictEvent),
    )
    this.handler = rpcHandler({
      // answered only for peers that announced themselves by heartbeat (and this node)
      isMember: (peerId) =>
        peerId === mesh.peerId || this.membership.byPeerId(peerId) !== undefined,
      local: this.init.local,
      steps: this.steps,
      log: this.init.log,
      nodeStatus: () => this.localStatus(),
      proposalStatus: (id) => this.recovery.statusFor(id),
      mergeRoster: (entries) => this.reconciler.mergeRoster(entries),
      resubscribe: async (from, node) => {
        if (this.membership.byPeerId(from)?.nodeId !== node)
          throw new Error(`only node ${node} itself may ask to be subscribed to anew`)
        if ((await this.init.local.subscriptions()).some((s) => s.peer === node))
          await this.init.local.unsubscribe(node)
        this.log.warn({ node }, 'subscribing anew to a member whose publication was re-created')
        this.reconciler.kick()
      },
      refuse: (from, method) => this.refuse(from, method),
      check: this.checkNode,
      checkReport: (r) => this.checker.record(r),
      commit: this.commitMode,
      resync: () => this.reconciler.resync(),
      members: () =>
        memberView(
          {
            nodeId: this.init.nodeId,
            joinState: this.reconciler.joinState,
            postgresUp: this.reconciler.postgresUp,
          },
          this.membership.members(),
          this.reconciler.removed,
        ),
    })
    mesh.handle(this.handler)
    // a fence trigger left by a crash no longer blocks anyone (its lock died with the
    // session), but it should not stay on the table
    const dropped = await this.init.local.fences.dropStaleFences().catch(() => 0)
    if (dropped > 0) this.log.warn({ dropped }, 'dropped fence triggers left by a crash')
    this.membership.start()
    this.reconciler.start()
    this.recovery.start()
    this.isolationWatch.start()
    this.checker.start()
    this.kept.start()
    if (this.init.healLostSlots !== false) this.healer.start()
    await this.commitMode.start()
  }

  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.offConflicts?.()
    this.offConflicts = undefined
    await stopInOrder(this.log, [
      ['commit-mode', () => this.commitMode.stop()],
      ['slot-healer', () => this.healer.stop()],
      ['checker', () => this.checker.stop()],
      ['kept-values', () => this.kept.stop()],
      ['isolation-watch', () => this.isolationWatch.stop()],
      ['recovery', () => this.recovery.stop()],
      ['reconciler', () => this.reconciler.stop()],
      ['membership', () => this.membership.stop()],
      ['steps', () => this.steps.stop()],
    ])
  }

  /**
   * Whether this node is cut off from its cluster (see isolation.ts): the mesh's verdict, or
   * members known and none heard for a while.
   */
  isolation(): MeshIsolation {
    const { mesh, nodeId, timings } = this.init
    const removed = this.reconciler.removed
    const members = this.membership
      .members()
      .filter((m) => m.nodeId !== nodeId && m.joinState !== 'removed' && !removed.has(m.nodeId))
    return combine(mesh.isolation(), memberReach(members, Date.now(), isolatedAfterMs(timings)))
  }

  /** Why this node is unwell, in words (empty when it is not); /healthz shows them. */
  problems(): string[] {
    const i = this.isolation()
    return i.isolated ? [isolationReason(i)] : []
  }

  /** proposals prepared here whose outcome nobody reachable knows */
  inDoubt(): number {
    return this.recovery.inDoubt.size
  }

  /** members by state, for metrics */
  memberCounts(): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const m of this.membership.members()) {
      const s = m.duplicate ? 'duplicate' : m.state
      counts[s] = (counts[s] ?? 0) + 1
    }
    return counts
  }

  async propose(op: 'add' | 'remove', rel: RelationName): Promise<Outcome> {
    this.requireMember()
    const o = await this.proposals.propose(op, rel)
    if (o.outcome !== 'committed') return o
    return await settleJoined(o, {
      log: this.init.log,
      checkSoon: (relation) => this.checker.checkSoon(relation),
      // not without the fence: the test hook shows what the fence alone prevents
      ...(this.init.noFence ? {} : { repair: (relation) => this.checker.repair(relation) }),
    })
  }

  /** Run a schema change on every node, or on none (POST /v1/cluster/ddl). */
  async ddl(req: DdlRequest): Promise<DdlAnswer> {
    this.requireMember()
    const { local, nodeId, log } = this.init
    return await runDdl({ local, proposals: this.proposals, nodeId, log }, req)
  }

  /** Set the commit mode on every member, or on none (PUT /v1/cluster/commit). */
  async setCommit(want: { mode: 'async' | 'sync'; quorum?: number }): Promise<CommitAnswer> {
    this.requireMember()
    return await this.commitMode.setForCluster(want, {
      members: () =>
        this.membership
          .members()
          .filter((m) => m.joinState !== 'removed' && !this.reconciler.removed.has(m.nodeId)),
      request: (m, method, params) =>
        this.init.mesh.request(m.peerId, { method, params }, { timeoutMs: FANOUT_TIMEOUT_MS }),
    })
  }

  /** A removed node serves reads about itself, but changes nothing in the cluster. */
  private requireMember(): void {
    if (this.reconciler.joinState === 'removed') {
      throw new ConflictError(
        `node ${this.init.nodeId} was removed from the cluster: ask a member, or re-admit this node with PUT /v1/cluster/nodes/${this.init.nodeId} on a member`,
        'ERR_NODE_REMOVED',
      )
    }
  }

  /** Member RPCs from a removed node are refused; it may still read the roster to learn why. */
  private refuse(from: string, method: string): { code: string; message: string } | undefined {
    const m = this.membership.byPeerId(from)
    if (!m || !this.reconciler.removed.has(m.nodeId) || method.startsWith('roster.')) return
    return {
      code: 'ERR_NODE_REMOVED',
      message: `node ${m.nodeId} was removed from the cluster (node ${this.init.nodeId} refuses it)`,
    }
  }

  /** See KeptValues: an apply worker kept this node's out-of-line value of a row of this table. */
  keptSoon(relation: string): void {
    this.kept.compareSoon(relation)
  }

  /** See Checker.checkSoon: rows of this table were skipped here. */
  checkSoon(relation: string): void {
    this.checker.checkSoon(relation)
  }

  /** Compare a table (or every replicated table) on every member. */
  async check(relation?: string): Promise<CheckAnswer> {
    this.requireMember()
    return await this.checker.check(relation)
  }

  /** Set every settled difference of a table to its winning version (or node `from`'s). */
  async repair(relation: string, from?: number): Promise<RepairAnswer> {
    this.requireMember()
    return await this.checker.repair(relation, from)
  }

  /** Reasons this node is not healthy, as /healthz and status report them. */
  healthReasons(): string[] {
    const out: string[] = [
      ...this.problems(),
      ...this.init.local.healthReasons(),
      ...this.checker.healthReasons(),
      ...this.commitMode.healthReasons(),
      ...(this.init.moreReasons?.() ?? []),
    ]
    if (this.reconciler.joinState === 'removed')
      out.push(`node ${this.init.nodeId} was removed from the cluster`)
    const copy = this.reconciler.joinProgress()
    if (copy)
      out.push(
        `node ${this.init.nodeId} is copying the cluster data (${copy.percent}%, ${copy.phase}, donor ${copy.donor ?? '?'})`,
      )
    else if (this.reconciler.joinState === 'joining' && this.reconciler.joinError)
      out.push(`node ${this.init.nodeId}: ${this.reconciler.joinError}`)
    if (this.membership.selfDuplicated()) out.push('another arbiter claims this node id')
    for (const c of this.recovery.stuckCommits()) {
      const where = c.failures.map((f) => `node ${f.node}: ${f.reason}`).join('; ')
      out.push(
        `the committed change ${c.op} ${c.relation} (version ${c.version}) has not finished after ${c.attempts} attempts: ${where}`,
      )
    }
    return out
  }

  /**
   * This node's publication was dropped and re-created: every member's slot here is broken for
   * good, so each drops its subscription to this node and the reconciler makes it anew.
   */
  async askPeersToResubscribe(): Promise<void> {
    const req = { method: 'subscriptions.recreate', params: { node: this.init.nodeId } }
    for (const { member, r } of await fanOut(this.init.mesh, this.membership.active(), req, 10_000))
      if (!r.ok)
        this.log.error(
          { node: member.nodeId, err: r.error.message },
          'a member could not subscribe anew to this node',
        )
  }

  /** This node's copy of the cluster's data, for metrics. */
  joinMetrics(): {
    copying: boolean
    percent: number
    rowsCopied: number
    donorPauseMs: number | undefined
  } {
    const p = this.reconciler.joiner.progress
    return {
      copying: this.reconciler.joinState === 'copying',
      percent: p.attempt === 0 ? 0 : p.percent,
      rowsCopied: p.rowsCopied,
      donorPauseMs: p.donorPauseMs,
    }
  }

  /** Committed changes whose steps keep failing (metrics). */
  stuckCount(): number {
    return this.recovery.stuckCommits().length
  }

  async replicaset(): Promise<cs.ReplicasetSnapshot> {
    return await this.init.local.cluster.replicasetSnapshot()
  }

  /** Every member as this node sees it, itself first. */
  nodes(): Array<Record<string, unknown>> {
    return this.view.nodes()
  }

  /** This node's status, as the fan-out reports it. */
  async localStatus(): Promise<Record<string, unknown>> {
    return await this.view.local()
  }

  /** Every member's status, asked in parallel; an unreachable one says so. */
  async status(): Promise<Record<string, unknown>> {
    return await this.view.cluster()
  }

  /** Every node's resolutions: asked live, completed from gossip for nodes that do not answer. */
  async history(): Promise<ClusterHistoryEntry[]> {
    return await this.conflicts.all()
  }

  /** Announce a resolver event to every member. */
  async announceConflict(e: Omit<ConflictEvent, 'v' | 'kind' | 'nodeId'>): Promise<void> {
    await this.conflicts.announce(e)
  }

  /**
   * Remove a node from the cluster (RosterOps.remove): every live member drops it, and a
   * member that misses it learns it from the roster's version in the heartbeats.
   */
  async removeNode(node: number): Promise<RosterChange> {
    this.requireMember()
    return await this.roster.remove(node)
  }

  /** Copy the cluster's data again on a node (itself or a member), in the background. */
  async resync(node: number): Promise<{ node: number; join_state: 'copying' }> {
    this.requireMember()
    return await this.roster.resync(node)
  }

  /** Take a removed node back: it joins again (adopts the replicaset, members subscribe to it). */
  async readmitNode(node: number): Promise<RosterChange> {
    this.requireMember()
    return await this.roster.readmit(node)
  }
}
