// The arbiter's local PostgreSQL, as one object with a lifetime: the pool, the watches on the
// peers' publications, and the node-level operations the API and the resolver call.
import { ConflictError, NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import { type Bound, bindDb } from './bind.js'
import * as checkStore from './check-store.js'
import * as cs from './cluster-state.js'
import { Db, type Listener, type Queryable } from './db.js'
import * as ddl from './ddl.js'
import { dropFenceTrigger, dropStaleFences, Fence, FenceSet } from './fence.js'
import type { SlotObservation } from './health-rules.js'
import { HealthWatch } from './health-watch.js'
import * as history from './history.js'
import type { RelationName } from './ident.js'
import * as jc from './join-copy.js'
import * as js from './join-slots.js'
import { ServerLogReader } from './logfile.js'
import * as lww from './lww.js'
import { LwwInstaller } from './lww-installer.js'
import { QUEUED_CHANNEL } from './lww-schema.js'
import { keepTrue } from './memo.js'
import { recordMissingRows } from './missing-rows.js'
import { PeerWatch } from './peer-watch.js'
import { GUARD_FALLBACK_CYCLES, PublicationGuard } from './publication-guard.js'
import { Refresher } from './refresher.js'
import { applyRepairs } from './repair-store.js'
import * as rs from './replicaset.js'
import { type InitResult, initNode, isInitialized, teardownNode } from './schema.js'
import * as seqs from './sequences.js'
import { lagBySubscriber, type NodeStatus, nodeStatus } from './status.js'
import * as subs from './subscriptions.js'
import * as ss from './sync-standbys.js'

export type { Listener, NodeStatus }
export interface LocalNodeInit {
  nodeId: number
  conninfo: string
  peerPassword?: string
  log: Logger
  /** standalone mode: LISTEN on peers for publication changes (the mesh coordinates instead) */
  watchPeers?: boolean
  /** the health watch's cycle; it compares the publication with the replicaset too (1000 ms) */
  guardIntervalMs?: number
  /** told after the publication was repaired (mesh mode asks the peers to subscribe anew) */
  onPublicationRepaired?: (r: rs.PublicationRepair) => void
  /** row-level last-writer-wins: replica triggers on every replicated table (lww.ts) */
  lww?: boolean
  /** which tables resolve row by row (a per-table resolver override); default: all of them */
  lwwFor?: (rel: RelationName) => boolean
  /** lww: apply workers report the rows they skip (config recordMissingRows) */
  recordMissingRows?: boolean
}

export class LocalNode {
  readonly nodeId: number
  private readonly db: Db
  private readonly initializedMemo: ReturnType<typeof keepTrue>
  /** the consistency check's sessions (long scans, origin-tagged repairs), apart from control */
  private readonly checkDb: Db
  private readonly init: LocalNodeInit
  private readonly log: Logger
  private readonly watch: PeerWatch
  private readonly guard: PublicationGuard
  private readonly health: HealthWatch
  private readonly refresher: Refresher
  /** the row-level resolution's triggers on this node's tables */
  readonly lwwTriggers: LwwInstaller
  // The stores the layers above use, bound to this node's pools: they never hold a pool.
  /** mesh mode's durable state: version, proposals, roster, commit setting */
  readonly cluster: Bound<typeof cs>
  readonly joinCopy: Bound<typeof jc>
  readonly joinSlots: Bound<typeof js>
  readonly sequences: Bound<typeof seqs>
  readonly standbys: Bound<typeof ss>
  readonly schemaChange: Bound<typeof ddl>
  readonly rowLevel: Bound<typeof lww & { recordMissingRows: typeof recordMissingRows }>
  readonly records: Bound<typeof history>
  readonly tables: Bound<typeof rs>
  readonly subscription: Bound<typeof subs>
  readonly fences: Bound<{
    dropFenceTrigger: typeof dropFenceTrigger
    dropStaleFences: typeof dropStaleFences
  }>
  readonly replication: Bound<{ lagBySubscriber: typeof lagBySubscriber }>
  /** the consistency check's queries and repairs, on the check pool */
  readonly checks: Bound<typeof checkStore & { applyRepairs: typeof applyRepairs }>

  constructor(init: LocalNodeInit) {
    this.init = init
    this.nodeId = init.nodeId
    this.log = init.log.child({ component: 'postgres' })
    this.db = new Db({ conninfo: init.conninfo, nodeId: init.nodeId, purpose: 'control' })
    this.initializedMemo = keepTrue(() => isInitialized(this.db))
    this.checkDb = new Db({
      conninfo: init.conninfo,
      nodeId: init.nodeId,
      purpose: 'check',
      max: 4,
    })
    this.refresher = new Refresher({ db: this.db, nodeId: init.nodeId, log: this.log })
    this.lwwTriggers = new LwwInstaller({
      db: this.db,
      log: this.log,
      enabled: init.lww === true,
      lwwFor: init.lwwFor,
      recordMissingRows: init.recordMissingRows === true,
      initialized: () => this.initialized(),
      writerToast: init.watchPeers === true, // standalone: no mesh to ask a row's writer
    })
    this.cluster = bindDb(this.db, cs)
    this.joinCopy = bindDb(this.db, jc)
    this.joinSlots = bindDb(this.db, js)
    this.sequences = bindDb(this.db, seqs)
    this.standbys = bindDb(this.db, ss)
    this.schemaChange = bindDb(this.db, ddl)
    this.rowLevel = bindDb(this.db, { ...lww, recordMissingRows })
    this.records = bindDb(this.db, history)
    this.tables = bindDb(this.db, rs)
    this.subscription = bindDb(this.db, subs)
    this.fences = bindDb(this.db, { dropFenceTrigger, dropStaleFences })
    this.replication = bindDb(this.db, { lagBySubscriber })
    this.checks = bindDb(this.checkDb, { ...checkStore, applyRepairs })
    const watching = { db: this.db, log: init.log, initialized: () => this.initialized() } // own component
    const cycleMs = init.guardIntervalMs ?? 1000
    // the health watch's query also asks whether the publication drifted: the guard repairs then
    this.guard = new PublicationGuard({
      ...watching,
      intervalMs: GUARD_FALLBACK_CYCLES * cycleMs, // its own look: a fallback
      ...(init.onPublicationRepaired ? { onRepaired: init.onPublicationRepaired } : {}),
    })
    const health = {
      intervalMs: cycleMs,
      nodeId: init.nodeId,
      onDrift: () => void this.guard.check(),
    }
    this.health = new HealthWatch({ ...watching, ...health })
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
    await this.refresher.settle()
    const left = (await this.checkDb.stop()) + (await this.db.stop())
    if (left > 0) this.log.warn({ sessions: left }, 'sessions still held at stop were closed')
  }

  /**
   * A write fence on one table (steps.ts raises and lowers it); with a proposal, raising it
   * also prepares the proposal here, in the same transaction (prepareIn).
   */
  fence(rel: RelationName, p?: cs.Proposal): Fence {
    return new Fence({ db: this.db, rel, ...(p ? { work: (c) => this.prepareIn(c, p) } : {}) })
  }

  /** One held session fencing many tables (a schema change, a join copy). */
  fenceSet(): FenceSet {
    return new FenceSet({ db: this.db })
  }

  /** Told at once when an apply worker queues a conflicting key (lww-schema.ts). */
  listenForConflicts(onQueued: (payload: string) => void): Promise<Listener> {
    return this.db.listen(QUEUED_CHANNEL, onQueued)
  }

  /** A session kept from the pool (a lock that outlives one query). */
  hold(): ReturnType<Db['hold']> {
    return this.db.hold()
  }

  /** The reader of this server's log (the resolver's input). */
  logReader(): ServerLogReader {
    return new ServerLogReader(this.db)
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

  /** Whether this node's trktr schema exists (a yes is kept a few seconds: memo.ts says why). */
  async initialized(): Promise<boolean> {
    return await this.initializedMemo.get()
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
   * A table proposal's prepare in the transaction that raises its fence, under the table's
   * lock: a joining table's trial publish and row-level triggers, then the proposal recorded.
   * A refusal throws (ConflictError); nothing commits. Returns what to call once committed.
   */
  private async prepareIn(c: Queryable, p: cs.Proposal): Promise<() => void> {
    let committed = () => {}
    if (p.op === 'add') {
      const rel = { schema: p.schema, table: p.table }
      const why = await rs.trialPublishIn(c, rel)
      if (why) throw new ConflictError(why, 'ERR_TABLE_REFUSED')
      committed = await this.lwwTriggers.installIn(c, rel).catch((err: Error) => {
        throw new ConflictError(`cannot install its triggers: ${err.message}`)
      })
    }
    await cs.recordProposalIn(c, p)
    return committed
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
    this.initializedMemo.forget()
    this.lwwTriggers.forget()
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
    await this.lwwTriggers.ensure()
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

  /** This node as TRAKTOR's /v1/arbiter/status reports it. */
  async status(): Promise<NodeStatus> {
    return await nodeStatus(
      this.db,
      this.nodeId,
      (await this.initialized()) ? await this.subscriptions() : undefined,
    )
  }

  /** Failed remote transactions, and (resolver lww) the row-level resolutions, newest first. */
  async history(): Promise<history.HistoryEntry[]> {
    await this.requireInitialized()
    const resolutions = () => lww.listResolutions(this.db).catch(() => [])
    return await history.listWithResolutions(this.db, this.init.lww ? resolutions : undefined)
  }

  /**
   * Refresh every enabled subscription now, waiting for each; a disabled one is refreshed when
   * it is enabled again. Throws with every failure named.
   */
  async refreshAll(opts: { triggers?: boolean } = {}): Promise<void> {
    // the tables' triggers before their rows arrive (a proposal's step skips this: its prepare
    // installed them); their absence must not stop a refresh: the lww loop installs them later
    const warn = (err: Error) =>
      this.log.warn({ err: err.message }, 'lww triggers not installed yet')
    if (opts.triggers !== false) await this.lwwTriggers.ensure().catch(warn)
    await this.refresher.all(await this.subscriptions())
  }

  /** Refreshes that failed earlier (subscription disabled, peer down): try again. */
  retryDueRefreshes(): void {
    this.refresher.retryDue()
  }

  /** Refresh our subscription to a peer, one at a time per peer. */
  refreshFrom(peer: number): Promise<void> {
    return this.refresher.from(peer)
  }

  async syncWatches(): Promise<void> {
    if (this.init.watchPeers === false || !(await this.initialized())) {
      this.watch.sync([])
      return
    }
    this.watch.sync(await subs.listPeers(this.db))
  }
}
