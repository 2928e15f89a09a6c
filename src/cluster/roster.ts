// The roster of removed nodes as this node keeps it: loaded from its PostgreSQL, merged from
// any member that knows a newer one, acted on at once (subscriptions to and the slot of a
// node removed now are dropped), and told to a removed node that still acts as a member.
import { z } from 'zod'
import type { Logger } from '../log.js'
import * as cs from '../postgres/cluster-state.js'
import type { LocalNode } from '../postgres/local.js'
import type { JoinState, Membership } from './membership.js'
import type { MeshPort } from './port.js'
import { rosterSource } from './reconcile-decide.js'

const TELL_EVERY_MS = 5000

const rosterSchema = z
  .array(
    z.object({
      node: z.int().min(0),
      removedMs: z.number().min(0),
      readmittedMs: z.number().min(0).nullable(),
    }),
  )
  .max(10_000)

export interface RosterInit {
  local: LocalNode
  membership: Membership
  mesh: MeshPort
  nodeId: number
  log: Logger
  /** a change was merged: run the reconcile pass again */
  kick: () => void
}

export class Roster {
  private readonly init: RosterInit
  private readonly log: Logger
  /** nodes removed from the cluster (this one included, if it was) */
  removed: ReadonlySet<number> = new Set()
  /** the newest change in the roster (ms) */
  version = 0
  /** when a removed member was last told so, per node (rate limit) */
  private readonly told = new Map<number, number>()

  constructor(init: RosterInit) {
    this.init = init
    this.log = init.log
  }

  async load(): Promise<void> {
    const entries = await this.init.local.cluster.roster()
    this.removed = new Set(entries.filter(cs.isRemovedEntry).map((e) => e.node))
    this.version = cs.rosterVersion(entries)
  }

  /**
   * Merge the roster of a member that knows a newer one. A node still joining asks a ready
   * member even without a newer version: a node removed while it was down must learn it before
   * it subscribes to anyone.
   */
  async sync(joinState: JoinState): Promise<void> {
    const alive = this.init.membership.members().filter((m) => m.state === 'alive' && !m.duplicate)
    const source = rosterSource(alive, this.version, joinState)
    if (!source) return
    const r = await this.init.mesh.request(
      source.peerId,
      { method: 'roster.get', params: {} },
      { timeoutMs: 3000 },
    )
    if (!r.ok) {
      this.log.debug({ node: source.nodeId, err: r.error.message }, 'cannot read the roster')
      return
    }
    const parsed = rosterSchema.safeParse(r.result)
    if (!parsed.success) {
      this.log.warn({ node: source.nodeId }, 'a member answered roster.get with garbage')
      return
    }
    const { changed } = await this.merge(parsed.data)
    if (changed.length > 0) {
      this.log.info({ from: source.nodeId, nodes: changed }, 'learned roster changes from a member')
    }
  }

  /** A member that is removed but still acts as one (it was away): tell it, now and then. */
  async tellRemoved(): Promise<void> {
    const now = Date.now()
    for (const m of this.init.membership.members()) {
      if (m.state !== 'alive' || m.joinState === 'removed' || !this.removed.has(m.nodeId)) continue
      if (now - (this.told.get(m.nodeId) ?? 0) < TELL_EVERY_MS) continue
      this.told.set(m.nodeId, now)
      this.log.warn({ node: m.nodeId }, 'a removed node is back: telling it it was removed')
      await this.init.mesh.request(
        m.peerId,
        { method: 'roster.merge', params: { entries: await this.init.local.cluster.roster() } },
        { timeoutMs: 3000 },
      )
    }
  }

  /**
   * Merge roster entries (a member's or the operator's change) and act on them at once:
   * subscriptions to and the slot of a node removed now are dropped here; this node's own
   * removal or re-admission is taken up by the next pass.
   */
  async merge(entries: readonly cs.RosterEntry[]): Promise<{ changed: number[] }> {
    const { local, nodeId } = this.init
    const changed = await local.cluster.mergeRoster(entries)
    await this.load()
    // a removed node this node still subscribes to is dropped too, changed here or not: the
    // member an operator asked wrote the removal before it merged (CI once found the
    // subscription there right after the answer, left to the next reconcile pass)
    const subscribed = new Set((await local.subscriptions()).map((s) => s.peer))
    const drop = [...this.removed].filter(
      (node) => node !== nodeId && (changed.includes(node) || subscribed.has(node)),
    )
    for (const node of drop) {
      for (const m of this.init.membership.members()) {
        if (m.nodeId === node) this.init.mesh.forgetPeer?.(m.peerId)
      }
      if (subscribed.has(node)) await local.unsubscribe(node)
      await local.dropSlotOf(node)
    }
    if (changed.length > 0 || drop.length > 0) this.init.kick()
    return { changed }
  }
}
