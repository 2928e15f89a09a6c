// What /v1/cluster/nodes and /v1/cluster/status answer: every member as this node sees it,
// and every member's own status asked at once, with the reasons the cluster is not healthy in
// words an operator acts on.
import type { LocalNode } from '../postgres/local.js'
import type { JoinProgress } from './join.js'
import type { Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import type { Reconciler } from './reconcile.js'
import { answerOf } from './rpc-results.js'

const FANOUT_TIMEOUT_MS = 2000

export interface ClusterStatusInit {
  nodeId: number
  mesh: Pick<MeshPort, 'peerId' | 'request'>
  local: Pick<LocalNode, 'status' | 'subscriptions'>
  membership: Membership
  reconciler: Reconciler
  advertisePostgres: string
  version: string
  /** this node's reasons for not being healthy */
  healthReasons: () => string[]
  sequences: () => unknown
  commit: () => unknown
}

export class ClusterStatus {
  private readonly init: ClusterStatusInit

  constructor(init: ClusterStatusInit) {
    this.init = init
  }

  /** Every member as this node sees it, itself first. */
  nodes(): Array<Record<string, unknown>> {
    const now = Date.now()
    return [
      {
        node: this.init.nodeId,
        self: true,
        peer_id: this.init.mesh.peerId,
        state: this.init.membership.selfDuplicated() ? 'duplicate' : 'alive',
        join_state: this.init.reconciler.joinState,
        ...(this.init.reconciler.joinError ? { join_error: this.init.reconciler.joinError } : {}),
        ...joinDetail(this.init.reconciler.joinProgress()),
        postgres_reachable: this.init.reconciler.postgresUp,
        replicaset_version: this.init.reconciler.version,
        postgres: this.init.advertisePostgres,
        version: this.init.version,
      },
      ...this.init.membership.members().map((m) => ({
        node: m.nodeId,
        self: false,
        peer_id: m.peerId,
        state: m.duplicate ? 'duplicate' : m.state,
        last_heard_ms_ago: now - m.lastHeardMs,
        join_state: this.init.reconciler.removed.has(m.nodeId) ? 'removed' : m.joinState,
        ...(m.joinState === 'copying' && m.joinPercent !== undefined
          ? { join_percent: m.joinPercent }
          : {}),
        postgres_reachable: m.postgresUp,
        replicaset_version: m.replicasetVersion,
        postgres: m.postgres,
        version: m.version,
        flaps: m.flaps,
      })),
    ]
  }

  /** This node's status, as the fan-out reports it. */
  async local(): Promise<Record<string, unknown>> {
    const { local } = this.init
    const status = await local.status()
    const subs = await local.subscriptions()
    return {
      ...status,
      join_state: this.init.reconciler.joinState,
      replicaset_version: this.init.reconciler.version,
      reasons: this.init.healthReasons(),
      sequences: this.init.sequences(),
      commit: this.init.commit(),
      subscriptions: subs.map((s) => ({
        name: s.name,
        peer: s.peer,
        enabled: s.enabled,
        apply_errors: s.applyErrors,
      })),
    }
  }

  /** Every member's status, asked in parallel; an unreachable one says so. */
  async cluster(): Promise<Record<string, unknown>> {
    const members = this.init.membership
      .members()
      .filter((m) => m.joinState !== 'removed' && !this.init.reconciler.removed.has(m.nodeId))
    const dead = members.filter((m) => m.state === 'dead')
    const live = members.filter((m) => m.state !== 'dead')
    const req = { method: 'node.status', params: {} }
    const remote = [
      ...dead.map((m) => ({ node: m.nodeId, reachable: false, state: m.state })),
      ...(await fanOut(this.init.mesh, live, req, FANOUT_TIMEOUT_MS)).map(
        ({ member: m, r: raw }) => {
          const r = answerOf('node.status', raw)
          return r.ok
            ? {
                node: m.nodeId,
                reachable: true,
                state: m.duplicate ? 'duplicate' : m.state,
                last_heard_ms_ago: Date.now() - m.lastHeardMs,
                ...r.result,
              }
            : { node: m.nodeId, reachable: false, state: m.state, error: r.error }
        },
      ),
    ]
    const selfState = this.init.membership.selfDuplicated() ? 'duplicate' : 'alive'
    const self = { reachable: true, state: selfState, ...(await this.local()) }
    const all = [self, ...remote] as Array<Record<string, unknown>>
    // a check's finding is told to every member: one line, not one per member
    const reasons = [...new Set(all.flatMap(memberReasons))]
    return {
      node: this.init.nodeId,
      healthy: reasons.length === 0,
      reasons,
      replicaset_version: this.init.reconciler.version,
      members: all.sort((a, b) => Number(a.node) - Number(b.node)),
    }
  }
}

/** Why one member makes the cluster unhealthy, in words an operator acts on. */
function memberReasons(n: Record<string, unknown>): string[] {
  const node = `node ${String(n.node)}`
  if (!n.reachable) {
    return [
      `${node} does not answer${typeof n.error === 'string' ? `: ${n.error}` : ` (${String(n.state)})`}`,
    ]
  }
  const out: string[] = []
  if (n.state !== 'alive') out.push(`${node} is ${String(n.state)}`)
  if (n.is_replicating === false) out.push(`${node}: a subscription is disabled`)
  const own = Array.isArray(n.reasons) ? (n.reasons as unknown[]).map(String) : []
  // a member's own reasons already name it; duplicates of ours are left out
  for (const r of own) if (!out.includes(r)) out.push(r.startsWith('node ') ? r : `${node}: ${r}`)
  return out
}

/** A copying node's own view of its copy, for /v1/cluster/nodes. */
function joinDetail(p: JoinProgress | undefined): Record<string, unknown> {
  if (!p) return {}
  return {
    join_percent: p.percent,
    join_copy: {
      phase: p.phase,
      donor: p.donor ?? null,
      attempt: p.attempt,
      tables: p.tables,
      tables_done: p.tablesDone,
      rows_copied: p.rowsCopied,
      rows_estimated: p.rowsEstimated,
      ...(p.lastError ? { last_error: p.lastError } : {}),
    },
  }
}
