// Mesh mode's cluster service: membership, the automatic mesh, two-phase proposals, conflict
// events and the fan-out behind /v1/cluster/* and /rpc. Parts start in dependency order and
// stop in reverse.
import type { CrashPoint } from '../config/types.js'
import { NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import type { ConflictEvent } from '../mesh/codec.js'
import * as cs from '../postgres/cluster-state.js'
import { dropStaleFences } from '../postgres/fence.js'
import type { HistoryEntry } from '../postgres/history.js'
import type { RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { dropSlotOf } from '../postgres/subscriptions.js'
import type { Timings } from './detector.js'
import { Membership } from './membership.js'
import type { MeshPort } from './port.js'
import { type Op, type Outcome, Proposals } from './proposals.js'
import { Reconciler } from './reconcile.js'
import { Recovery } from './recovery.js'
import { rpcHandler } from './rpc-handlers.js'
import { Steps } from './steps.js'

export interface ClusterInit {
  mesh: MeshPort
  local: LocalNode
  nodeId: number
  conninfo: string
  advertisePostgres: string
  version: string
  timings: Timings
  log: Logger
  onOutcome?: (o: Outcome) => void
  /** a member came back alive after suspect or dead */
  onFlap?: () => void
  /** test-only (fault suite) */
  crashAt?: CrashPoint
}

const FANOUT_TIMEOUT_MS = 2000
const MAX_REMOTE_EVENTS = 1000

export class Cluster {
  readonly membership: Membership
  readonly proposals: Proposals
  readonly reconciler: Reconciler
  private readonly steps: Steps
  private readonly recovery: Recovery
  private readonly init: ClusterInit
  private readonly log: Logger
  private readonly remoteEvents: Array<ConflictEvent & { receivedMs: number }> = []
  private started = false

  constructor(init: ClusterInit) {
    this.init = init
    this.log = init.log.child({ component: 'cluster' })
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
        replicasetVersion: this.reconciler.version,
      }),
      onChange: (m, previous) => {
        this.reconciler.kick()
        if (m.state === 'alive' && previous !== undefined && previous !== 'alive') init.onFlap?.()
      },
    })
    this.reconciler = new Reconciler({
      local,
      membership: this.membership,
      mesh,
      nodeId,
      log: init.log,
      joinGraceMs: Math.max(1500, init.timings.suspectAfterMs * 1.5),
    })
    this.steps = new Steps({ local, conninfo: init.conninfo, nodeId, log: init.log })
    this.proposals = new Proposals({
      local,
      mesh,
      membership: this.membership,
      steps: this.steps,
      nodeId,
      log: init.log,
      ...(init.onOutcome ? { onOutcome: init.onOutcome } : {}),
      ...(init.crashAt ? { crashAt: init.crashAt } : {}),
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
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    const { mesh } = this.init
    // gossip on proposals/conflicts must come from the node the sender announced itself as
    const claim = (from: string, payload: unknown) =>
      this.membership.byPeerId(from)?.nodeId === (payload as { nodeId?: number }).nodeId
    mesh.setClaimCheck('conflicts', claim)
    mesh.setClaimCheck('proposals', claim)
    mesh.subscribe('conflicts', (m) => this.onConflictEvent(m.payload as ConflictEvent))
    mesh.handle(
      rpcHandler({
        local: this.init.local,
        steps: this.steps,
        log: this.init.log,
        nodeStatus: () => this.localStatus(),
        proposalStatus: (id) => this.recovery.statusFor(id),
        removeNode: (node) => this.forget(node),
      }),
    )
    // a fence trigger left by a crash no longer blocks anyone (its lock died with the
    // session), but it should not stay on the table
    const dropped = await dropStaleFences((sql) => this.init.local.db.query(sql)).catch(() => 0)
    if (dropped > 0) this.log.warn({ dropped }, 'dropped fence triggers left by a crash')
    this.membership.start()
    this.reconciler.start()
    this.recovery.start()
  }

  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.recovery.stop()
    await this.reconciler.stop()
    this.membership.stop()
    await this.steps.stop()
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

  propose(op: Op, rel: RelationName): Promise<Outcome> {
    return this.proposals.propose(op, rel)
  }

  async replicaset(): Promise<cs.ReplicasetSnapshot> {
    return await cs.replicasetSnapshot(this.init.local.db)
  }

  /** Every member as this node sees it, itself first. */
  nodes(): Array<Record<string, unknown>> {
    const now = Date.now()
    return [
      {
        node: this.init.nodeId,
        self: true,
        peer_id: this.init.mesh.peerId,
        state: this.membership.selfDuplicated() ? 'duplicate' : 'alive',
        join_state: this.reconciler.joinState,
        ...(this.reconciler.joinError ? { join_error: this.reconciler.joinError } : {}),
        replicaset_version: this.reconciler.version,
        postgres: this.init.advertisePostgres,
        version: this.init.version,
      },
      ...this.membership.members().map((m) => ({
        node: m.nodeId,
        self: false,
        peer_id: m.peerId,
        state: m.duplicate ? 'duplicate' : m.state,
        last_heard_ms_ago: now - m.lastHeardMs,
        join_state: m.joinState,
        replicaset_version: m.replicasetVersion,
        postgres: m.postgres,
        version: m.version,
        flaps: m.flaps,
      })),
    ]
  }

  /** This node's status, as the fan-out reports it. */
  async localStatus(): Promise<Record<string, unknown>> {
    const { local } = this.init
    const status = await local.status()
    const subs = await local.subscriptions()
    return {
      ...status,
      join_state: this.reconciler.joinState,
      replicaset_version: this.reconciler.version,
      subscriptions: subs.map((s) => ({
        name: s.name,
        peer: s.peer,
        enabled: s.enabled,
        apply_errors: s.applyErrors,
      })),
    }
  }

  /** Every member's status, asked in parallel; an unreachable one says so. */
  async status(): Promise<Record<string, unknown>> {
    const members = this.membership.members().filter((m) => m.joinState !== 'removed')
    const remote = await Promise.all(
      members.map(async (m) => {
        if (m.state === 'dead') return { node: m.nodeId, reachable: false, state: m.state }
        const r = await this.init.mesh.request(
          m.peerId,
          { method: 'node.status', params: {} },
          { timeoutMs: FANOUT_TIMEOUT_MS },
        )
        return r.ok
          ? {
              node: m.nodeId,
              reachable: true,
              state: m.duplicate ? 'duplicate' : m.state,
              last_heard_ms_ago: Date.now() - m.lastHeardMs,
              ...(r.result as object),
            }
          : { node: m.nodeId, reachable: false, state: m.state, error: r.error.message }
      }),
    )
    const selfState = this.membership.selfDuplicated() ? 'duplicate' : 'alive'
    const self = { reachable: true, state: selfState, ...(await this.localStatus()) }
    const all = [self, ...remote] as Array<Record<string, unknown>>
    return {
      node: this.init.nodeId,
      healthy: all.every((n) => n.reachable && n.state === 'alive' && n.is_replicating !== false),
      replicaset_version: this.reconciler.version,
      members: all.sort((a, b) => Number(a.node) - Number(b.node)),
    }
  }

  /** Every node's resolutions: asked live, completed from gossip for nodes that do not answer. */
  async history(): Promise<Array<HistoryEntry & { node: number }>> {
    const out: Array<HistoryEntry & { node: number }> = (await this.init.local.history()).map(
      (h) => ({ ...h, node: this.init.nodeId }),
    )
    const answered = new Set([this.init.nodeId])
    await Promise.all(
      this.membership.members().map(async (m) => {
        if (m.state === 'dead') return
        const r = await this.init.mesh.request(
          m.peerId,
          { method: 'history.list', params: {} },
          { timeoutMs: FANOUT_TIMEOUT_MS },
        )
        if (!r.ok || !Array.isArray(r.result)) return
        answered.add(m.nodeId)
        for (const h of r.result as HistoryEntry[]) out.push({ ...h, node: m.nodeId })
      }),
    )
    for (const e of this.remoteEvents) {
      if (answered.has(e.nodeId)) continue
      out.push({
        node: e.nodeId,
        subscription: e.subscription,
        lsn: e.lsn,
        occurred: e.occurred,
        relation: e.relation,
        key: null,
        value: null,
        sqlStateCode: e.sqlState,
        reason: e.reason,
        kind: e.sqlState.startsWith('23') ? 'conflict' : 'error',
        action: e.action === 'skip' ? 'skip' : 'none',
        attempts: 1,
        resolved: e.resolved,
      })
    }
    return out.sort((a, b) => (a.occurred < b.occurred ? 1 : -1))
  }

  /** Announce a resolver event to every member. */
  async announceConflict(e: Omit<ConflictEvent, 'v' | 'kind' | 'nodeId'>): Promise<void> {
    const event: ConflictEvent = { v: 1, kind: 'conflict', nodeId: this.init.nodeId, ...e }
    await this.init.mesh
      .publish('conflicts', event)
      .catch((err: Error) => this.log.debug({ err: err.message }, 'conflict event not sent'))
  }

  private onConflictEvent(e: ConflictEvent): void {
    this.remoteEvents.push({ ...e, receivedMs: Date.now() })
    if (this.remoteEvents.length > MAX_REMOTE_EVENTS) this.remoteEvents.shift()
    this.log.info(
      {
        from: e.nodeId,
        subscription: e.subscription,
        lsn: e.lsn,
        relation: e.relation,
        action: e.action,
      },
      'conflict event from a member',
    )
  }

  /**
   * Remove a node from the cluster: it drops its own subscriptions (if reachable), every member
   * drops its subscription to it and the slot its subscription used, and remembers it is gone.
   */
  async removeNode(
    node: number,
  ): Promise<{ node: number; results: Array<{ node: number; ok: boolean; error?: string }> }> {
    const target = this.membership.members().find((m) => m.nodeId === node && !m.duplicate)
    const subscribed = (await this.init.local.subscriptions()).some((s) => s.peer === node)
    if (!target && !subscribed) {
      throw new NotFoundError(`node ${node} is not a member of this cluster`, 'ERR_NO_SUCH_NODE')
    }
    const results: Array<{ node: number; ok: boolean; error?: string }> = []
    if (target && target.state !== 'dead') {
      const r = await this.init.mesh.request(
        target.peerId,
        { method: 'node.remove', params: { node } },
        { timeoutMs: 5000 },
      )
      results.push({ node, ok: r.ok, ...(r.ok ? {} : { error: r.error.message }) })
    }
    await this.forget(node)
    results.push({ node: this.init.nodeId, ok: true })
    const others = this.membership
      .members()
      .filter((m) => m.nodeId !== node && m.state !== 'dead' && !m.duplicate)
    for (const m of others) {
      const r = await this.init.mesh.request(
        m.peerId,
        { method: 'node.remove', params: { node } },
        { timeoutMs: 5000 },
      )
      results.push({ node: m.nodeId, ok: r.ok, ...(r.ok ? {} : { error: r.error.message }) })
    }
    this.log.info({ node, results }, 'node removed from the cluster')
    return { node, results }
  }

  /** This node's part of a removal (also when it is the node removed). */
  private async forget(node: number): Promise<void> {
    const { local, nodeId } = this.init
    await cs.markRemoved(local.db, node)
    if (node === nodeId) {
      this.reconciler.kick()
      return
    }
    for (const m of this.membership.members()) {
      if (m.nodeId === node) this.init.mesh.forgetPeer?.(m.peerId)
    }
    const sub = (await local.subscriptions()).find((s) => s.peer === node)
    if (sub) await local.unsubscribe(node)
    await dropSlotOf(local.db, node, nodeId)
  }
}
