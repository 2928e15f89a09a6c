// Refreshing this node's subscriptions after a peer's publication changed: one refresh at a
// time per peer, and the peers whose subscription could not be refreshed (disabled, peer down)
// remembered and tried again (retryDue, from the resolver's cycle). A disabled subscription
// cannot be refreshed; enabling it (subscriptions.enable) refreshes it first, behind a lock.
import type { Logger } from '../log.js'
import type { Db } from './db.js'
import * as subs from './subscriptions.js'

export class Refresher {
  private readonly db: Db
  private readonly nodeId: number
  private readonly log: Logger
  private readonly refreshing = new Map<number, Promise<void>>()
  /** peers whose publication changed while our subscription could not refresh */
  private readonly refreshDue = new Set<number>()

  constructor(init: { db: Db; nodeId: number; log: Logger }) {
    this.db = init.db
    this.nodeId = init.nodeId
    this.log = init.log
  }

  /** Refresh each enabled subscription, waiting for each; throws with every failure named. */
  async all(list: readonly subs.SubscriptionRow[]): Promise<void> {
    const failures: string[] = []
    for (const s of list) {
      if (!s.enabled) {
        this.refreshDue.add(s.peer)
        continue
      }
      try {
        await subs.refresh(this.db, s.name)
      } catch (err) {
        failures.push(`${s.name}: ${(err as Error).message}`)
      }
    }
    if (failures.length > 0) throw new Error(`refresh failed: ${failures.join('; ')}`)
  }

  retryDue(): void {
    for (const peer of this.refreshDue) void this.from(peer)
  }

  /** Refresh our subscription to a peer, one at a time per peer. */
  from(peer: number): Promise<void> {
    const prev = this.refreshing.get(peer) ?? Promise.resolve()
    const next = prev.then(async () => {
      const name = subs.subscriptionName(this.nodeId, peer)
      try {
        const enabled = await subs.isEnabled(this.db, name)
        if (enabled === undefined) return
        if (!enabled) {
          this.refreshDue.add(peer)
          return
        }
        await subs.refresh(this.db, name)
        this.refreshDue.delete(peer)
        this.log.debug({ subscription: name }, 'subscription refreshed')
      } catch (err) {
        this.refreshDue.add(peer)
        this.log.warn({ subscription: name, err: (err as Error).message }, 'refresh failed')
      }
    })
    this.refreshing.set(peer, next)
    void next.finally(() => {
      if (this.refreshing.get(peer) === next) this.refreshing.delete(peer)
    })
    return next
  }

  /** Wait for the refreshes under way (stop). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.refreshing.values())
  }
}
