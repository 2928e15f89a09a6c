// The arbiter's local PostgreSQL, as one object with a lifetime: the pool, the watches on the
// peers' publications, and the node-level operations the API and the resolver call.
import { NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import { Db, type Queryable } from './db.js'
import type { SlotObservation } from './health-rules.js'
import { HealthWatch } from './health-watch.js'
import * as history from './history.js'
import { formatRelation, type RelationName } from './ident.js'
import * as lww from './lww.js'
import { PeerWatch } from './peer-watch.js'
import { PublicationGuard } from './publication-guard.js'
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
  /** how often the publication is compared with the replicaset (default 1000 ms) */
  guardIntervalMs?: number
  /** told after the publication was repaired (mesh mode asks the peers to subscribe anew) */
  onPublicationRepaired?: (r: rs.PublicationRepair) => void
  /** row-level last-writer-wins: replica triggers on every replicated table (lww.ts) */
  lww?: boolean
  /** which tables resolve row by row (a per-table resolver override); default: all of them */
  lwwFor?: (rel: RelationName) => boolean
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
  /** the consistency check's sessions (long scans, origin-tagged repairs), apart from control */
  readonly checkDb: Db
  private readonly init: LocalNodeInit
  private readonly log: Logger
  private readonly watch: PeerWatch
  private readonly guard: PublicationGuard
  private readonly health: HealthWatch
  private readonly refreshing = new Map<number, Promise<void>>()
  /** the table signature each installed trigger function was generated for */
  private readonly lwwSignatures = new Map<string, string>()
  private lwwQueue: Promise<void> = Promise.resolve()
  /** peers whose publication changed while our subscription could not refresh */
  private readonly refreshDue = new Set<number>()

  constructor(init: LocalNodeInit) {
    this.init = init
    this.nodeId = init.nodeId
    this.log = init.log.child({ component: 'postgres' })
    this.db = new Db({ conninfo: init.conninfo, nodeId: init.nodeId, purpose: 'control' })
    this.checkDb = new Db({
      conninfo: init.conninfo,
      nodeId: init.nodeId,
      purpose: 'check',
      max: 4,
    })
    this.health = new HealthWatch({
      db: this.db,
      nodeId: init.nodeId,
      log: this.log,
      intervalMs: init.guardIntervalMs ?? 1000,
    })
    this.guard = new PublicationGuard({
      db: this.db,
      log: this.log,
      intervalMs: init.guardIntervalMs ?? 1000,
      ...(init.onPublicationRepaired ? { onRepaired: init.onPublicationRepaired } : {}),
    })
    this.watch = new PeerWatch({
      nodeId: init.nodeId,
      log: this.log,
      onChange: (peer, what) =>
        void (what === 'recreated' ? this.resubscribe(peer) : this.refreshFrom(peer)),
    })
  }

  async start(): Promise<void> {
    this.db.start()
    this.checkDb.start()
    await this.syncWatches().catch((err: Error) =>
      this.log.warn({ err: err.message }, 'cannot read peers yet'),
    )
    this.guard.start()
    this.health.start()
  }

  async stop(): Promise<void> {
    await this.health.stop()
    await this.guard.stop()
    await this.watch.stop()
    await Promise.allSettled(this.refreshing.values())
    await this.checkDb.stop()
    await this.db.stop()
  }

  /** PostgreSQL answers a query (the health check); throws its error otherwise. */
  async ping(): Promise<void> {
    await this.db.query('SELECT 1')
  }

  /** This node's connection string (the join copy opens its own sessions with it). */
  get conninfo(): string {
    return this.init.conninfo
  }

  /** A member's advertised connection string with this node's peerPassword added. */
  peerConninfo(advertised: string): string {
    return subs.withPeerPassword(advertised, this.init.peerPassword)
  }

  async initialized(): Promise<boolean> {
    return await isInitialized(this.db)
  }

  async initNode(): Promise<InitResult> {
    // initialised before: a publication dropped by hand is re-created with the replicated
    // tables (and the peers told), not created empty
    if (await this.initialized()) await this.guard.check()
    const result = await initNode({ db: this.db, nodeId: this.nodeId, log: this.log })
    await this.syncWatches()
    return result
  }

  /**
   * With row-level resolution on: the replica triggers exist on exactly the replicated tables,
   * each made for the table's current columns. Runs before every refresh, so a table never
   * receives a peer's change before its triggers are there.
   */
  async ensureLww(): Promise<{ installed: string[] }> {
    return await this.oneLwwAtATime(() => this.ensureLwwNow())
  }

  /**
   * Trigger installs run one at a time: the start-up pass and a PREPARE re-creating the same
   * trigger function in two sessions fail with "tuple concurrently updated".
   */
  private oneLwwAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lwwQueue.then(fn, fn)
    this.lwwQueue = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  private async ensureLwwNow(): Promise<{ installed: string[] }> {
    const out = { installed: [] as string[] }
    if (!this.init.lww || !(await this.initialized())) return out
    await this.db.query(lww.LWW_DDL)
    const have = await lww.installed(this.db)
    const wanted = (await lww.replicated(this.db)).filter((r) => this.init.lwwFor?.(r) ?? true)
    for (const rel of wanted) {
      if (await this.installLwwNow(rel, have)) out.installed.push(formatRelation(rel))
    }
    // a table whose override says otherwise now (set before a restart): no row-level triggers
    for (const h of have) {
      if (wanted.some((r) => r.schema === h.rel.schema && r.table === h.rel.table)) continue
      if (this.init.lwwFor?.(h.rel) ?? true) continue
      await this.db.tx((c) => lww.uninstall(c, h.rel))
      this.lwwSignatures.delete(`${h.rel.schema}\u0000${h.rel.table}`)
      this.log.info(
        { relation: formatRelation(h.rel) },
        'row-level triggers removed: resolver override',
      )
    }
    if (out.installed.length > 0) this.log.info(out, 'row-level resolution triggers')
    return out
  }

  /**
   * Install (or re-make, after a column change) one table's triggers. A proposal to add a table
   * does this at PREPARE, before the write fence: with writers waiting on the fence, the
   * triggers could not be created any more. Triggers on a table that is not replicated (an
   * aborted proposal) are harmless: they fire only in apply workers, and none applies it.
   */
  async installLww(rel: RelationName, have?: lww.Installed[]): Promise<boolean> {
    return await this.oneLwwAtATime(() => this.installLwwNow(rel, have))
  }

  private async installLwwNow(rel: RelationName, have?: lww.Installed[]): Promise<boolean> {
    if (!this.init.lww || !(this.init.lwwFor?.(rel) ?? true)) return false
    const t = await lww.describe(this.db, rel)
    if (!t) return false
    const key = `${rel.schema}\u0000${rel.table}`
    const signature = lwwSignature(t)
    const present = (have ?? (await lww.installed(this.db))).some(
      (h) => h.rel.schema === rel.schema && h.rel.table === rel.table,
    )
    if (present && this.lwwSignatures.get(key) === signature) return false
    await this.db.query(lww.LWW_DDL)
    const made = await this.db.tx(async (c) => {
      // read again under the table's lock: a schema change may have committed since
      const fresh = await lww.lockAndDescribe(c, rel)
      if (fresh) await lww.install(c, fresh)
      return fresh
    })
    if (!made) return false
    this.lwwSignatures.set(key, lwwSignature(made))
    return true
  }

  /**
   * Re-make one table's row-level triggers inside the caller's transaction (a cluster schema
   * change): the trigger function names the table's columns, and one made for the old columns
   * would fail or drop a column in the first conflict after the change.
   */
  async remakeLwwIn(q: Queryable, rel: RelationName): Promise<void> {
    if (!this.init.lww || !(this.init.lwwFor?.(rel) ?? true)) return
    const t = await lww.describe(
      { query: async (sql: string, params?: unknown[]) => (await q.query(sql, params)).rows },
      rel,
    )
    if (!t) return
    await lww.install(q, t)
    // made in a transaction that may still roll back: the next pass compares afresh
    this.lwwSignatures.delete(`${rel.schema}\u0000${rel.table}`)
  }

  /** Why this node is not healthy, as far as its own PostgreSQL tells. */
  healthReasons(): string[] {
    return [...this.guard.reasons(), ...this.health.reasons()]
  }

  /** The peers' replication slots on this server, as the health watch last saw them. */
  slotHealth(): SlotObservation[] {
    return this.health.slots()
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

  async subscribe(
    peer: number,
    conninfo: string,
    opts: { enabled?: boolean } = {},
  ): Promise<{ created: boolean; slotLsn?: string }> {
    await this.requireInitialized()
    const r = await subs.subscribe(this.db, {
      self: this.nodeId,
      peer,
      conninfo,
      ...(this.init.peerPassword === undefined ? {} : { peerPassword: this.init.peerPassword }),
      ...(opts.enabled === false ? { enabled: false } : {}),
    })
    await this.syncWatches()
    this.log.info(
      { peer, created: r.created, enabled: opts.enabled !== false },
      'subscribed to peer',
    )
    return r
  }

  /**
   * Make our subscription to a peer anew (a new slot there): after the peer's publication was
   * dropped and re-created, the old slot can never stream again.
   */
  async resubscribe(peer: number): Promise<void> {
    const known = (await subs.listPeers(this.db)).find((p) => p.nodeId === peer)
    try {
      await subs.unsubscribe(this.db, this.nodeId, peer)
      if (known)
        await subs.subscribe(this.db, { self: this.nodeId, peer, conninfo: known.conninfo })
      await this.syncWatches()
      this.log.warn({ peer }, 'subscribed anew to a peer whose publication was re-created')
    } catch (err) {
      this.log.error({ peer, err: (err as Error).message }, 'cannot subscribe anew to a peer')
    }
  }

  async unsubscribe(peer: number): Promise<{ existed: boolean; slotLeft: boolean }> {
    await this.requireInitialized()
    const r = await subs.unsubscribe(this.db, this.nodeId, peer)
    await this.syncWatches()
    this.log.info({ peer, ...r }, 'unsubscribed from peer')
    return r
  }

  /** Drop the slot a (removed) node's subscription used on this server, if it is there. */
  async dropSlotOf(subscriber: number): Promise<boolean> {
    return await subs.dropSlotOf(this.db, subscriber, this.nodeId)
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
    await this.ensureLww()
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

  /** Failed remote transactions, and (resolver lww) the row-level resolutions, newest first. */
  async history(): Promise<history.HistoryEntry[]> {
    await this.requireInitialized()
    const failed = await history.listHistory(this.db)
    if (!this.init.lww) return failed
    const rows = (await lww.listResolutions(this.db).catch(() => [])).map(lwwEntry)
    return [...failed, ...rows].sort((a, b) => (a.occurred < b.occurred ? 1 : -1))
  }

  /**
   * Refresh every enabled subscription now, waiting for each; a disabled one is refreshed when
   * it is enabled again. Throws with every failure named.
   */
  async refreshAll(): Promise<void> {
    // the triggers' absence must not stop a refresh: the resolution loop installs them later
    await this.ensureLww().catch((err: Error) =>
      this.log.warn({ err: err.message }, 'row-level resolution triggers not installed yet'),
    )
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

/** A row-level resolution in the shape of a history row (TRAKTOR's fields first). */
function lwwEntry(r: lww.Resolution): history.HistoryEntry {
  const who = (v: { node: number | null; ts: string | null }) =>
    `node ${v.node ?? '?'} (${v.ts ?? 'no commit timestamp'})`
  const verb =
    r.action === 'delete wins' ? 'the delete of' : r.action === 'restored' ? 'restored' : 'kept'
  return {
    subscription: null,
    lsn: '0/0',
    occurred: r.at,
    relation: r.relation,
    key: JSON.stringify(r.key),
    value: null,
    sqlStateCode: /insert_exists|update_exists/.test(r.kind) ? '23505' : null,
    reason: `${r.kind}: ${verb} the version of ${who(r.winner)} over ${who(r.loser)}`,
    kind: r.kind,
    action: 'lww',
    attempts: r.entries,
    resolved: r.at,
    winner: r.winner,
    loser: r.loser,
    resolution: r.action,
  }
}

/** What a table's trigger function is generated from: re-made when it changes. */
function lwwSignature(t: lww.LwwTable): string {
  return `${t.oid}:${t.columns.join(',')}:${t.pk.join(',')}:${t.referenced}`
}
