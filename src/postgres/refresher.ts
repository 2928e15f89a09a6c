// Refreshing this node's subscriptions after a peer's publication changed: one refresh at a
// time per peer, and the peers whose subscription could not be refreshed (disabled, peer down)
// remembered and tried again (retryDue, from the resolver's cycle). A disabled subscription
// cannot be refreshed; enabling it (subscriptions.enable) refreshes it first, behind a lock.
//
// An enabled subscription whose refresh fails is disabled at once: its apply worker would skip,
// for good, every change to a table the subscription does not list yet (a table that just
// joined the replicaset), so the peer's rows of that table would never arrive. Disabled, the
// changes wait in the peer's slot; the retry enables it again through subscriptions.enable,
// which lists the missing tables before the worker applies anything.
import type { Logger } from '../log.js'
import type { Db } from './db.js'
import * as subs from './subscriptions.js'

/** a suspended subscription is tried again after 1 s, doubling up to 5 s: a peer back from a
 * restart (a few seconds) is caught within 5 s, and an attempt costs one connection */
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 5_000

/** The subscription was dropped under the refresh (a node's removal): nothing to refresh. */
const gone = (err: unknown): boolean => (err as { sqlState?: string }).sqlState === '42704'

export class Refresher {
  private readonly db: Db
  private readonly nodeId: number
  private readonly log: Logger
  private readonly refreshing = new Map<number, Promise<void>>()
  /** peers whose publication changed while our subscription could not refresh */
  private readonly refreshDue = new Set<number>()
  /** peers whose subscription this refresher disabled after a failed refresh, and their retry */
  private readonly suspended = new Map<number, { delayMs: number; nextMs: number }>()

  constructor(init: { db: Db; nodeId: number; log: Logger }) {
    this.db = init.db
    this.nodeId = init.nodeId
    this.log = init.log
  }

  /** Refresh every enabled subscription at once, waiting for all; throws with every failure named. */
  async all(list: readonly subs.SubscriptionRow[]): Promise<void> {
    const failures: string[] = []
    // side by side: each refresh opens its own connection to its publisher (a bare REFRESH took
    // 13 ms here, 11 of them the connection), so with N peers they were N in a row (on 3 nodes
    // the latency bench saw no difference; measured A/B)
    await Promise.all(
      list.map(async (s) => {
        if (!s.enabled) {
          this.refreshDue.add(s.peer)
          return
        }
        try {
          await subs.refresh(this.db, s.name)
        } catch (err) {
          if (gone(err)) return
          failures.push(`${s.name}: ${(err as Error).message}`)
          await this.suspend(s.peer, s.name, err as Error)
        }
      }),
    )
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
        if (enabled === undefined) {
          this.suspended.delete(peer)
          return
        }
        if (!enabled) {
          this.refreshDue.add(peer)
          if (this.suspended.has(peer)) await this.resume(peer, name)
          return
        }
        this.suspended.delete(peer)
        await subs.refresh(this.db, name)
        this.refreshDue.delete(peer)
        this.log.debug({ subscription: name }, 'subscription refreshed')
      } catch (err) {
        if (gone(err)) {
          this.refreshDue.delete(peer)
          this.suspended.delete(peer)
          return
        }
        this.refreshDue.add(peer)
        await this.suspend(peer, name, err as Error)
      }
    })
    this.refreshing.set(peer, next)
    void next.finally(() => {
      if (this.refreshing.get(peer) === next) this.refreshing.delete(peer)
    })
    return next
  }

  /** Disable an enabled subscription whose refresh failed; its changes wait in the slot. */
  private async suspend(peer: number, name: string, err: Error): Promise<void> {
    this.refreshDue.add(peer)
    try {
      await subs.disable(this.db, name)
    } catch (e) {
      this.log.error(
        { subscription: name, err: err.message, disableErr: (e as Error).message },
        'refresh failed and the subscription could not be disabled: changes to tables it does not list yet may be skipped; run traktor ctl check',
      )
      return
    }
    const was = this.suspended.get(peer)
    const delayMs = was ? Math.min(was.delayMs * 2, RETRY_MAX_MS) : RETRY_MIN_MS
    this.suspended.set(peer, { delayMs, nextMs: Date.now() + delayMs })
    this.log.warn(
      { subscription: name, err: err.message, retryMs: delayMs },
      'refresh failed: subscription disabled until it can be refreshed (its changes wait in the slot)',
    )
  }

  /** Enable a suspended subscription again, its missing tables listed first (when due). */
  private async resume(peer: number, name: string): Promise<void> {
    const s = this.suspended.get(peer)
    if (!s || Date.now() < s.nextMs) return
    try {
      await subs.enable(this.db, name)
    } catch (err) {
      // enable() left it disabled: tried again later
      const delayMs = Math.min(s.delayMs * 2, RETRY_MAX_MS)
      this.suspended.set(peer, { delayMs, nextMs: Date.now() + delayMs })
      this.log.warn(
        { subscription: name, err: (err as Error).message, retryMs: delayMs },
        'subscription still cannot be refreshed: it stays disabled',
      )
      return
    }
    this.suspended.delete(peer)
    this.refreshDue.delete(peer)
    this.log.info({ subscription: name }, 'subscription refreshed and enabled again')
  }

  /** Wait for the refreshes under way (stop). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.refreshing.values())
  }
}
