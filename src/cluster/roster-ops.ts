// Changes to the cluster's roster, from any member: remove a node, take a removed node back
// (each written here, then sent to every live member, which answers for itself), and copy the
// cluster's data again on a node (resync).
import { ConflictError, NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import type { LocalNode } from '../postgres/local.js'
import type { Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import type { Reconciler } from './reconcile.js'

export interface RosterChange {
  node: number
  results: Array<{ node: number; ok: boolean; error?: string }>
}

export interface RosterOpsInit {
  nodeId: number
  local: Pick<LocalNode, 'cluster' | 'subscriptions'>
  mesh: Pick<MeshPort, 'request'>
  membership: Membership
  reconciler: Reconciler
  log: Logger
}

export class RosterOps {
  private readonly init: RosterOpsInit
  private readonly log: Logger

  constructor(init: RosterOpsInit) {
    this.init = init
    this.log = init.log
  }

  /**
   * Remove a node from the cluster: the removal goes into this node's roster and is sent to
   * every live member (the removed node included, if it answers); each drops its subscription
   * to the node and the slot the node's subscription used, and the node drops its own
   * subscriptions. A member that misses it (down, partitioned) learns it from the roster's
   * version in the heartbeats; a removed node that comes back is told, and takes no part.
   */
  async remove(node: number): Promise<RosterChange> {
    const known =
      this.init.membership.members().some((m) => m.nodeId === node) ||
      (await this.init.local.subscriptions()).some((s) => s.peer === node)
    if (!known && !this.init.reconciler.removed.has(node)) {
      throw new NotFoundError(`node ${node} is not a member of this cluster`, 'ERR_NO_SUCH_NODE')
    }
    await this.init.local.cluster.markRemoved(node)
    const results = await this.spread(node)
    this.log.info({ node, results }, 'node removed from the cluster')
    return { node, results }
  }

  /**
   * Copy the cluster's data again on a node (itself or a member): it answers at once and copies
   * in the background; /v1/cluster/nodes follows it (join_state copying, join_percent).
   */
  async resync(node: number): Promise<{ node: number; join_state: 'copying' }> {
    if (node === this.init.nodeId) {
      await this.init.reconciler.resync()
    } else {
      const m = this.init.membership.active().find((x) => x.nodeId === node)
      if (!m) throw new NotFoundError(`node ${node} is not a live member`, 'ERR_NO_SUCH_NODE')
      const r = await this.init.mesh.request(
        m.peerId,
        { method: 'node.resync', params: {} },
        { timeoutMs: 10_000 },
      )
      if (!r.ok) throw new ConflictError(`node ${node}: ${r.error.message}`, 'ERR_RESYNC_REFUSED')
    }
    this.log.info({ node }, 'resync started')
    return { node, join_state: 'copying' }
  }

  /** Take a removed node back: it joins again (adopts the replicaset, members subscribe to it). */
  async readmit(node: number): Promise<RosterChange> {
    if (!this.init.reconciler.removed.has(node)) {
      throw new ConflictError(`node ${node} is not removed from this cluster`, 'ERR_NOT_REMOVED')
    }
    await this.init.local.cluster.markReadmitted(node)
    const results = await this.spread(node)
    this.log.info({ node, results }, 'node re-admitted to the cluster')
    return { node, results }
  }

  /** Apply the roster here, then send it to every live member; each answers for itself. */
  private async spread(node: number): Promise<RosterChange['results']> {
    const entries = await this.init.local.cluster.roster()
    await this.init.reconciler.mergeRoster(entries)
    const results: RosterChange['results'] = [{ node: this.init.nodeId, ok: true }]
    const targets = this.init.membership.members().filter((m) => m.state !== 'dead' && !m.duplicate)
    const req = { method: 'roster.merge', params: { entries } }
    for (const { member, r } of await fanOut(this.init.mesh, targets, req, 5000))
      results.push({ node: member.nodeId, ok: r.ok, ...(r.ok ? {} : { error: r.error.message }) })
    // the node itself first, as the answer has always listed it
    return results.sort((a, b) => (a.node === node ? -1 : b.node === node ? 1 : 0))
  }
}
