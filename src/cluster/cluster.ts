// Mesh mode's cluster service: membership, the automatic mesh, two-phase proposals, conflict
// events and the fan-out behind /v1/cluster/* and /rpc. Parts start in dependency order and
// stop in reverse.
import type { JoinMode } from '../config/types.js'
import { ConflictError } from '../errors.js'
import { stopInOrder } from '../lifecycle.js'
import type { Logger } from '../log.js'
import type { ConflictEvent } from '../mesh/codec.js'
import type { MeshIsolation, RpcHandler } from '../mesh/types.js'
import type * as cs from '../postgres/cluster-state.js'
import type { RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { CheckNode } from './check-node.js'
import { type CheckAnswer, Checker, type RepairAnswer } from './checker.js'
import { ClusterHistory, type ClusterHistoryEntry } from './cluster-history.js'
import {
  type ClusterPortsInit,
  checkPortOf,
  FANOUT_TIMEOUT_MS,
  takesPart,
  usedSequences,
} from './cluster-ports.js'
import { ClusterStatus } from './cluster-status.js'

export type { RosterChange } from './roster-ops.js'

import { type CommitAnswer, CommitMode, newer } from './commit-mode.js'
import { type DdlAnswer, type DdlRequest, runDdl } from './ddl.js'
import { isolatedAfterMs, type Timings } from './detector.js'
import type { FaultHooks } from './faults.js'
import { combine, IsolationWatch, isolationReason, memberReach } from './isolation.js'
import type { JoinProgress } from './join.js'
import { Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import { type Outcome, Proposals } from './proposals.js'
import { Reconciler } from './reconcile.js'
import { Recovery } from './recovery.js'
import { type RosterChange, RosterOps } from './roster-ops.js'
import { rpcHandler } from './rpc-handlers.js'
import { SequenceStriper } from './sequences.js'
import { SlotHealer } from './slot-healer.js'
import { Steps } from './steps.js'

export interface ClusterInit {
  mesh: MeshPort
  local: LocalNode
  nodeId: number
  advertisePostgres: string
  version: string
  timings: Timings
  log: Logger
  onOutcome?: (o: Outcome) => void
  /** a member came back alive after suspect or dead */
  onFlap?: () => void
  /** background consistency check period (ms); 0 = off */
  checkEveryMs?: number
  /** a peer whose slot here was lost copies the cluster's data again (default true) */
  healLostSlots?: boolean
  /** node-striped sequences for replicated tables (default stripe) */
  sequences?: 'stripe' | 'off'
  /** sync: commits wait for every live, caught-up peer (synchronous_standby_names) */
  commit?: 'async' | 'sync'
  /** sync: how many peers a commit waits for (default every live one) */
  syncQuorum?: number
  /** how a new node joins (config `join`) */
  join?: JoinMode
  /** test-only: the join copy waits this long before copying */
  joinPauseMs?: number
  onJoinProgress?: (p: JoinProgress) => void
  /** where the fault suite acts in a proposal (faults.ts); nothing by default */
  faults?: FaultHooks
  noFence?: boolean
}

export class Cluster {
  readonly membership: Membership
  readonly proposals: Proposals
  readonly reconciler: Reconciler
  readonly striper: SequenceStriper
  private readonly steps: Steps
  private readonly recovery: Recovery
  private readonly isolationWatch: IsolationWatch
  readonly checker: Checker
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
    this.conflicts = new ClusterHistory({
      nodeId: init.nodeId,
      own: () => init.local.history(),
      mesh: init.mesh,
      members: () => this.membership.members(),
      log: this.log,
    })
    const { mesh, local, nodeId } = init
    this.membership = new Membership({
      mesh,
      nodeId,
      postgres: init.advertisePostgres,
      version: init.version,
      timings: init.timings,
      log: init.log,
      self: () => ({
        joinState: this.reconciler.joinState,
        ...joinPercent(this.reconciler.joinProgress()),
        replicasetVersion: this.reconciler.version,
        rosterVersion: this.reconciler.rosterVersion,
        postgresUp: this.reconciler.postgresUp,
        commit: this.commitMode.current(),
      }),
      onChange: (m, previous) => {
        this.reconciler.kick()
        if (m.commit && newer(m.commit, this.commitMode.current()))
          void this.commitMode
            .adopt(m.commit, `node ${m.nodeId}`)
            .catch((err: Error) =>
              this.log.warn({ err: err.message, node: m.nodeId }, 'commit mode not adopted'),
            )
        if (m.state === 'alive' && previous !== undefined && previous !== 'alive') init.onFlap?.()
      },
    })
    this.striper = new SequenceStriper({
      local,
      nodeId,
      log: init.log,
      enabled: (init.sequences ?? 'stripe') === 'stripe',
      nodeIds: () => [
        nodeId,
        ...this.membership
          .members()
          .filter((m) => !m.duplicate && !this.reconciler.removed.has(m.nodeId))
          .map((m) => m.nodeId),
      ],
      gather: (rels) => usedSequences(this.ports(), rels),
    })
    this.reconciler = new Reconciler({
      local,
      membership: this.membership,
      mesh,
      nodeId,
      log: init.log,
      joinGraceMs: Math.max(1500, init.timings.suspectAfterMs * 1.5),
      striper: this.striper,
      ...(init.join ? { join: init.join } : {}),
      ...(init.joinPauseMs ? { joinPauseMs: init.joinPauseMs } : {}),
      ...(init.onJoinProgress ? { onJoinProgress: init.onJoinProgress } : {}),
    })
    this.steps = new Steps({
      local,
      nodeId,
      log: init.log,
      noFence: init.noFence === true,
      striper: this.striper,
    })
    this.proposals = new Proposals({
      local,
      mesh,
      membership: this.membership,
      isRemoved: (node) => this.reconciler.removed.has(node),
      steps: this.steps,
      nodeId,
      log: init.log,
      ...(init.onOutcome ? { onOutcome: init.onOutcome } : {}),
      ...(init.faults ? { faults: init.faults } : {}),
      drain: (nodes, timeoutMs) => this.checkNode.sync({ nodes, timeoutMs }),
    })
    this.recovery = new Recovery({
      local,
      mesh,
      membership: this.membership,
      proposals: this.proposals,
      steps: this.steps,
      nodeId,
      log: init.log,
    })
    this.isolationWatch = new IsolationWatch({ log: init.log, check: () => this.isolation() })
    this.checkNode = new CheckNode({ local, nodeId, log: init.log })
    this.checker = new Checker({
      nodeId,
      port: checkPortOf(this.ports()),
      log: init.log,
      everyMs: init.checkEveryMs ?? 0,
    })
    this.healer = new SlotHealer({
      nodeId,
      log: init.log,
      slots: () => local.slotHealth(),
      ready: (peer) =>
        this.membership
          .members()
          .some(
            (m) =>
              m.nodeId === peer && m.state === 'alive' && takesPart(m, (n) => this.isRemoved(n)),
          ),
      resync: (peer) => this.resync(peer),
      record: (h) => local.records.recordHeal(h),
    })
    this.commitMode = new CommitMode({
      local,
      nodeId,
      members: () => this.membership.members(),
      log: init.log,
      initialized: () => local.initialized(),
      configured: {
        mode: init.commit ?? 'async',
        ...(init.syncQuorum ? { quorum: init.syncQuorum } : {}),
      },
    })
    this.roster = new RosterOps({
      nodeId,
      local,
      mesh: init.mesh,
      membership: this.membership,
      reconciler: this.reconciler,
      log: this.log,
    })
    this.view = new ClusterStatus({
      nodeId,
      mesh: init.mesh,
      local,
      membership: this.membership,
      reconciler: this.reconciler,
      advertisePostgres: init.advertisePostgres,
      version: init.version,
      healthReasons: () => this.healthReasons(),
      sequences: () => this.striper.status(),
      commit: () => this.commitMode.view(),
    })
  }

  /** What the checker and the striper need of the cluster (cluster-ports.ts). */
  private ports(): ClusterPortsInit {
    const { mesh, nodeId, local } = this.init
    return {
      nodeId,
      mesh,
      membership: this.membership,
      isRemoved: (n) => this.isRemoved(n),
      isReady: () => this.reconciler.joinState === 'ready',
      rpc: () => this.rpc(),
      tables: async () => (await local.cluster.replicasetSnapshot()).tables.map((t) => t.relation),
    }
  }

  private isRemoved(node: number): boolean {
    return this.reconciler.removed.has(node)
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
    return await this.proposals.propose(op, rel)
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

function joinPercent(p: JoinProgress | undefined): { joinPercent?: number } {
  return p ? { joinPercent: p.percent } : {}
}
