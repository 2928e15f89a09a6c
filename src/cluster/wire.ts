// A ready node's subscriptions: one to every ready, stable member, none to a removed node
// (the reconciler's pass ends with this).
import type { Logger } from '../log.js'
import type { LocalNode } from '../postgres/local.js'
import type { Member, Membership } from './membership.js'

export interface WireContext {
  local: LocalNode
  membership: Membership
  /** nodes removed from the cluster */
  removed: ReadonlySet<number>
  /** why subscribing to a member failed, kept for status (updated here) */
  failing: Map<number, string>
  log: Logger
}

/** Subscribe to the ready members; whether nothing was left to do (no change, none waiting). */
export async function wireSubscriptions(c: WireContext, members: Member[]): Promise<boolean> {
  const { local, membership, removed, failing, log } = c
  const current = await local.subscriptions()
  let untouched = true
  for (const s of current) {
    if (!removed.has(s.peer)) continue
    await local.unsubscribe(s.peer)
    untouched = false
  }
  // a removal this node learned from the roster: the removed node's slot here goes too
  for (const node of removed) await local.dropSlotOf(node)
  const have = new Set(current.map((s) => s.peer))
  for (const m of members) {
    if (have.has(m.nodeId) || m.joinState !== 'ready') continue
    untouched = false
    if (!membership.isStable(m)) continue
    try {
      await local.subscribe(m.nodeId, m.postgres)
      failing.delete(m.nodeId)
    } catch (err) {
      const msg = (err as Error).message
      if (failing.get(m.nodeId) !== msg)
        log.warn({ node: m.nodeId, err: msg }, 'cannot subscribe to member')
      failing.set(m.nodeId, msg)
    }
  }
  return untouched
}
