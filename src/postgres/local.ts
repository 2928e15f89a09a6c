// The arbiter's local PostgreSQL, as one object with a lifetime: the pool, the watches on the
// peers' publications, and the node-level operations the API and the resolver call.
import { NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import { Db } from './db.js'
import * as history from './history.js'
import type { RelationName } from './ident.js'
import { PeerWatch } from './peer-watch.js'
import * as rs from './replicaset.js'
import { type InitResult, initNode, isInitialized, teardownNode } from './schema.js'
import { replicationLagMs, serverFacts } from './status.js'
import * as subs from './subscriptions.js'

export interface LocalNodeInit {
  nodeId: number
  conninfo: string
  peerPassword?: string
  log: Logger
  /** standalone mode: LISTEN on peers for publication changes (the mesh coordinates instead) */
  watchPeers?: boolean
}

export interface NodeStatus {
  node: number
  is_replicating: boolean
  is_tainted: boolean
  conflicts_resolved: number
  conflicts_pending: number
  replication_lag_ms: number
  server_version: number
  server_version_num: number
}

export class LocalNode {
  readonly nodeId: number
  readonly db: Db
  private readonly init: LocalNodeInit
  private readonly log: Logger
  private readonly watch: PeerWatch
  private readonly refreshing = new Map<number, Promise<void>>()
  /** peers whose publication changed while our subscription could not refresh */
  private readonly refreshDue = new Set<number>()

  constructor(init: LocalNodeInit) {
    this.init = init
    this.nodeId = init.nodeId
    this.log = init.log.child({ component: 'postgres' })
    this.db = new Db({ conninfo: init.conninfo, nodeId: init.nodeId, purpose: 'control' })
    this.watch = new PeerWatch({
      nodeId: init.nodeId,
      log: this.log,
      onChange: (peer) => void this.refreshFrom(peer),
    })
  }

  async start(): Promise<void> {
    this.db.start()
    await this.syncWatches().catch((err: Error) =>
      this.log.warn({ err: err.message }, 'cannot read peers yet'),
    )
  }

  async stop(): Promise<void> {
    await this.watch.stop()
    await Promise.allSettled(this.refreshing.values())
    await this.db.stop()
  }

  async initialized(): Promise<boolean> {
    return await isInitialized(this.db)
  }

  async initNode(): Promise<InitResult> {
    const result = await initNode({ db: this.db, nodeId: this.nodeId, log: this.log })
    await this.syncWatches()
    return result
  }

  /** Drop our subscriptions, then the publication, triggers and schema. */
  async teardown(): Promise<{ slotsLeft: number[] }> {
    const slotsLeft: number[] = []
    if (await this.initialized()) {
      for (const s of await subs.listSubscriptions(this.db, this.nodeId)) {
        const r = await subs.unsubscribe(this.db, this.nodeId, s.peer)
        if (r.slotLeft) slotsLeft.push(s.peer)
      }
    }
    await teardownNode(this.db)
    this.watch.sync([])
    return { slotsLeft }
  }

  async requireInitialized(): Promise<void> {
    if (!(await this.initialized())) {
      throw new NotFoundError(
        `node ${this.nodeId} is not initialised: PUT /v1/arbiter/control first`,
        'ERR_NOT_INITIALIZED',
      )
    }
  }

  async subscribe(peer: number, conninfo: string): Promise<{ created: boolean }> {
    await this.requireInitialized()
    const r = await subs.subscribe(this.db, {
      self: this.nodeId,
      peer,
      conninfo,
      ...(this.init.peerPassword === undefined ? {} : { peerPassword: this.init.peerPassword }),
    })
    await this.syncWatches()
    this.log.info({ peer, created: r.created }, 'subscribed to peer')
    return r
  }

  async unsubscribe(peer: number): Promise<{ existed: boolean; slotLeft: boolean }> {
    await this.requireInitialized()
    const r = await subs.unsubscribe(this.db, this.nodeId, peer)
    await this.syncWatches()
    this.log.info({ peer, ...r }, 'unsubscribed from peer')
    return r
  }

  async subscriptions(): Promise<subs.SubscriptionRow[]> {
    return await subs.listSubscriptions(this.db, this.nodeId)
  }

  async stage(rel: RelationName, op: 'add' | 'remove'): Promise<string> {
    await this.requireInitialized()
    return op === 'add' ? await rs.stageAdd(this.db, rel) : await rs.stageRemove(this.db, rel)
  }

  /** Commit staged changes, tell subscribers of this node, refresh our own subscriptions. */
  async commit(): Promise<rs.CommitResult> {
    await this.requireInitialized()
    const result = await rs.commitStaged(this.db)
    if (result.added.length + result.removed.length > 0) {
      await rs.notifyPublicationChanged(this.db)
      this.log.info(result, 'replicaset committed')
    }
    // our peers may have committed first; pick up what they publish now
    for (const s of await this.subscriptions()) void this.refreshFrom(s.peer)
    return result
  }

  async replicaset(): Promise<rs.ReplicasetEntry[]> {
    await this.requireInitialized()
    return await rs.replicasetStatus(this.db)
  }

  async status(): Promise<NodeStatus> {
    const facts = await serverFacts(this.db)
    const init = await this.initialized()
    const counts = init
      ? await history.historyCounts(this.db)
      : { resolved: 0, pending: 0, tainted: false }
    const list = init ? await this.subscriptions() : []
    return {
      node: this.nodeId,
      is_replicating: list.every((s) => s.enabled),
      is_tainted: counts.tainted,
      conflicts_resolved: counts.resolved,
      conflicts_pending: counts.pending,
      replication_lag_ms: await replicationLagMs(this.db),
      server_version: Number(facts.version.match(/^\d+(\.\d+)?/)?.[0] ?? 0),
      server_version_num: facts.versionNum,
    }
  }

  async history(): Promise<history.HistoryEntry[]> {
    await this.requireInitialized()
    return await history.listHistory(this.db)
  }

  /**
   * Refresh every enabled subscription now, waiting for each; a disabled one is refreshed when
   * it is enabled again. Throws with every failure named.
   */
  async refreshAll(): Promise<void> {
    const failures: string[] = []
    for (const s of await this.subscriptions()) {
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

  /** Refreshes that failed earlier (subscription disabled, peer down): try again. */
  retryDueRefreshes(): void {
    for (const peer of this.refreshDue) void this.refreshFrom(peer)
  }

  async syncWatches(): Promise<void> {
    if (this.init.watchPeers === false || !(await this.initialized())) {
      this.watch.sync([])
      return
    }
    this.watch.sync(await subs.listPeers(this.db))
  }

  /** Refresh our subscription to a peer, one at a time per peer. */
  refreshFrom(peer: number): Promise<void> {
    const prev = this.refreshing.get(peer) ?? Promise.resolve()
    const next = prev.then(async () => {
      const name = subs.subscriptionName(this.nodeId, peer)
      try {
        const [s] = await this.db.query<{ enabled: boolean }>(
          `SELECT subenabled AS enabled FROM pg_subscription WHERE subname = $1`,
          [name],
        )
        if (!s) return
        if (!s.enabled) {
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
}
