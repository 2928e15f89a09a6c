import { type Beat, onBeat } from '../beat.js'
import type { JoinMode } from '../config/types.js'
import { ConflictError } from '../errors.js'
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import { formatRelation } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { JoinCopy, type JoinProgress, type RunOptions } from './join.js'
import { decideJoin } from './join-decide.js'
import { CopyLoop } from './join-loop.js'
import { askView } from './join-waits.js'
import type { JoinState, Member, Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import { decidePass, donors, livePeers } from './reconcile-decide.js'
import { Roster } from './roster.js'
import { answerOf } from './rpc-results.js'
import type { SequenceStriper } from './sequences.js'
import { wireSubscriptions } from './wire.js'

const TICK_MS = 500
/**
 * A settled node (ready, every member it should subscribe to wired, nothing owed) looks again
 * this often; events kick a pass at once (a member's record changed, a change applied here).
 */
const QUIET_MS = 3000

export interface ReconcilerInit {
  local: LocalNode
  membership: Membership
  mesh: MeshPort
  nodeId: number
  log: Logger
  /** with no member heard within this time, a fresh node founds the cluster */
  joinGraceMs: number
  /** node-striped sequences: a node is ready only with its sequences striped */
  striper?: SequenceStriper
  /** how a new node joins (default: copy the cluster's data into empty tables) */
  join?: JoinMode
  /** test-only: the join copy waits this long before copying */
  joinPauseMs?: number
  onJoinProgress?: (p: JoinProgress) => void
}

export class Reconciler {
  private readonly init: ReconcilerInit
  private readonly log: Logger
  joinState: JoinState = 'joining'
  joinError: string | undefined
  private adoptFailed = false // the last adopt failed its checks (and set joinError)
  private waitingWhy: string | undefined // why the last pass left this node joining
  version = 0
  readonly roster: Roster
  postgresUp = true // the last pass reached PostgreSQL (members see it in the heartbeat)
  private startedMs = 0
  private timer: Beat | undefined
  private running: Promise<void> | undefined
  private again = false
  /** the last pass found nothing left to do */
  private settled = false
  private lastPassMs = 0
  private readonly failing = new Map<number, string>()
  // members not yet known to have refreshed their subscription to this node after an adopt
  private readonly owedRefresh = new Set<number>()
  readonly joiner: JoinCopy
  private readonly copyLoop: CopyLoop

  constructor(init: ReconcilerInit) {
    this.init = init
    this.log = init.log.child({ component: 'reconcile' })
    this.roster = new Roster({
      local: init.local,
      membership: init.membership,
      mesh: init.mesh,
      nodeId: init.nodeId,
      log: this.log,
      kick: () => this.kick(),
    })
    this.joiner = new JoinCopy({
      local: init.local,
      nodeId: init.nodeId,
      log: init.log,
      candidates: () => this.donors(),
      peers: () => this.livePeers(),
      viewOf: (m) => askView(init.mesh, m),
      ...(init.joinPauseMs ? { pauseMs: init.joinPauseMs } : {}),
      ...(init.onJoinProgress ? { onProgress: init.onJoinProgress } : {}),
    })
    this.copyLoop = new CopyLoop({
      joiner: this.joiner,
      local: init.local,
      log: this.log,
      copying: () => this.joinState === 'copying',
      becomeReady: () => this.becomeReady(),
      ready: () => this.kick(),
      failed: (msg) => {
        this.joinError = msg
      },
      refused: (msg) => {
        this.joinError = msg
        this.joinState = 'joining'
      },
    })
  }

  /** While copying the cluster's data: how far, for the heartbeat and /v1/cluster/nodes. */
  joinProgress(): JoinProgress | undefined {
    return this.joinState === 'copying' ? this.joiner.progress : undefined
  }

  start(): void {
    if (this.timer) return
    this.startedMs = Date.now()
    this.timer = onBeat(TICK_MS, () => {
      if (!this.settled || Date.now() - this.lastPassMs >= QUIET_MS) this.kick()
    })
    this.kick()
  }

  async stop(): Promise<void> {
    this.timer?.stop()
    this.timer = undefined
    await this.stopCopy()
    await this.running
  }

  /** Run a pass now (or once more right after the one running). */
  kick(): void {
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.pass()
      .then(() => {
        this.postgresUp = true
      })
      .catch((err: Error & { code?: string; sqlState?: string }) => {
        const down =
          err.code === 'ERR_POSTGRES_CONNECTION' || /^(08|57P|28)/.test(err.sqlState ?? '')
        if (down !== !this.postgresUp || !down)
          this.log.warn({ err: err.message }, 'reconcile pass failed')
        this.postgresUp = !down
      })
      .finally(() => {
        this.running = undefined
        if (this.again && this.timer) {
          this.again = false
          this.kick()
        }
      })
  }

  /** Wait for the pass in flight (tests, API calls that need a settled view). */
  async settle(): Promise<void> {
    await this.running
  }

  private async pass(): Promise<void> {
    const { local, membership, nodeId } = this.init
    this.settled = false
    this.lastPassMs = Date.now()
    if (!(await local.initialized())) await local.initNode()
    await this.roster.load()
    await this.roster.sync(this.joinState)
    if (this.removed.has(nodeId)) {
      if (this.joinState !== 'removed') {
        this.log.warn(
          'this node was removed from the cluster: it takes no part until a member re-admits it (PUT /v1/cluster/nodes/<id>)',
        )
      }
      await this.stopCopy()
      this.joinState = 'removed'
      for (const s of await local.subscriptions()) await local.unsubscribe(s.peer)
      return
    }
    if (this.joinState === 'removed') {
      this.log.warn('this node was re-admitted to the cluster: joining again')
      this.joinState = 'joining'
      this.joinError = undefined
    }
    this.version = await local.cluster.replicasetVersion()
    await this.roster.tellRemoved()
    const members = membership.members().filter((m) => !this.removed.has(m.nodeId) && !m.duplicate)
    const verdict = decidePass({
      self: nodeId,
      removed: this.removed,
      joinState: this.joinState,
      joinError: this.joinError,
      adoptFailed: this.adoptFailed,
      version: this.version,
      members,
      bootstrapsElsewhere: this.init.mesh.bootstrapsElsewhere?.() ?? false,
      graceOver: Date.now() - this.startedMs >= this.init.joinGraceMs,
    })
    let waits = verdict.kind === 'wait' ? verdict.why : undefined
    if (verdict.kind === 'adopt') await this.adopt(verdict.from)
    else if (verdict.kind === 'arrive') {
      this.adoptFailed = false
      this.joinError = undefined
      waits = await this.arrive(members)
    }
    // a node that stays joining says why, once per reason (a join error was said when it came)
    if (waits !== undefined && waits !== this.waitingWhy && waits !== this.joinError)
      this.log.info({ why: waits }, 'not joining yet')
    this.waitingWhy = waits
    if (this.joinState !== 'ready') return
    // the cluster grew past the stride, or a sequence was reset by hand: stripe again
    await this.init.striper?.recheck()
    const wired = await wireSubscriptions(
      { ...this.init, removed: this.removed, failing: this.failing, log: this.log },
      members,
    )
    if (this.owedRefresh.size > 0) await this.askRefresh()
    this.settled = wired && this.owedRefresh.size === 0 && this.failing.size === 0
  }

  /** nodes removed from the cluster (this one included, if it was) */
  get removed(): ReadonlySet<number> {
    return this.roster.removed
  }

  /** the newest change this node knows of in the roster of removed nodes */
  get rosterVersion(): number {
    return this.roster.version
  }

  /** Merge roster entries (a member's or the operator's change), acted on at once. */
  async mergeRoster(entries: readonly cs.RosterEntry[]): Promise<{ changed: number[] }> {
    return await this.roster.merge(entries)
  }

  /** Ready, unless this node's sequences are not striped yet (then: false, try again). */
  private async becomeReady(): Promise<boolean> {
    // no write here may take an id another node made: stripe first (or wait, and stay joining);
    // a ready node that adopted new tables stripes their sequences before anything else
    if (this.init.striper && !(await this.init.striper.ensure())) return false
    if (this.joinState === 'ready') return true
    this.joinState = 'ready'
    this.joinError = undefined
    this.log.info({ version: this.version }, 'node is ready')
    return true
  }

  /** every other live node of the cluster, whatever its join state */
  private livePeers(): Member[] {
    return livePeers(this.init.membership.members(), this.init.nodeId, this.removed)
  }

  /** Live ready members to copy from (stable or never interrupted: no flap wait), PostgreSQL up. */
  private donors(): Member[] {
    const ok = (m: Member) => this.init.membership.isStable(m) || this.init.membership.isUnbroken(m)
    return donors(this.init.membership.members(), this.removed, ok)
  }

  /**
   * A node about to be ready: a member before is ready at once; a new one copies the
   * cluster's data first, refuses to join, or waits (decideJoin says which; why it waits).
   */
  private async arrive(members: Member[], adopted = false): Promise<string | undefined> {
    if (this.joinState !== 'joining') return
    const { local } = this.init
    const mode = this.init.join ?? 'empty-only'
    const marker = await local.joinCopy.readMarker()
    const tables = await local.joinCopy.replicatedTables()
    const occupied =
      marker === undefined && mode !== 'no-copy' ? await local.joinCopy.occupied(tables) : []
    const ready = members.filter((m) => m.joinState === 'ready')
    const d = decideJoin({
      mode,
      marker,
      subscriptions: (await local.subscriptions()).length,
      readyPeers: Math.max(adopted ? 1 : 0, ready.filter((m) => m.state === 'alive').length),
      readyHeard: ready.length,
      tables: tables.length,
      occupied: occupied.map((o) => ({ table: formatRelation(o.rel), rows: o.rows })),
    })
    if (d.kind === 'wait') return d.why
    if (d.kind === 'refuse') {
      if (d.error !== this.joinError) this.log.error({ occupied }, d.error)
      this.joinError = d.error
      return
    }
    if (d.kind === 'ready') {
      if (marker === undefined) await local.joinCopy.writeMarker('done', null)
      this.log.info({ why: d.why }, 'joining without a copy')
      await this.becomeReady()
      return
    }
    this.log.info({ why: d.why, mode }, 'copying the cluster data before becoming ready')
    // a copy that starts over, or one that replaces rows here, empties the tables first
    this.startCopy({ mode, resync: false, clear: mode === 'copy' || marker !== undefined })
  }

  /**
   * Copy the cluster's data again (ctl resync; also the cure for a lost slot): the same
   * procedure as a join — fresh subscriptions, this node's rows replaced by the donor's
   * snapshot in one transaction per table, under an origin the members do not receive.
   */
  async resync(): Promise<void> {
    if (this.joinState !== 'ready') {
      throw new ConflictError(
        `node ${this.init.nodeId} is ${this.joinState}: only a ready node is copied again`,
        'ERR_NOT_READY',
      )
    }
    if (this.donors().length === 0)
      throw new ConflictError('no live ready member to copy from', 'ERR_NO_DONOR')
    await this.init.local.joinCopy.writeMarker('copying', null)
    this.log.warn('copying the cluster data again (resync)')
    this.startCopy({ mode: this.init.join ?? 'empty-only', resync: true, clear: true })
  }

  /** Copy until it succeeds (each failed attempt starts over), then be ready. */
  private startCopy(first: RunOptions): void {
    this.joinState = 'copying'
    this.copyLoop.start(first)
  }

  private async stopCopy(): Promise<void> {
    await this.copyLoop.stop()
    if (this.joinState === 'copying') this.joinState = 'joining'
  }

  /** Take a member's replicaset (join, or catch up after missing changes). */
  private async adopt(from: Member): Promise<void> {
    const { local, mesh } = this.init
    const r = answerOf(
      'replicaset.get',
      await mesh.request(
        from.peerId,
        { method: 'replicaset.get', params: {} },
        { timeoutMs: 3000 },
      ),
    )
    if (!r.ok) throw new Error(`cannot read the replicaset from node ${from.nodeId}: ${r.error}`)
    const snap: cs.ReplicasetSnapshot = r.result
    const problems = await this.check(snap, from.nodeId)
    if (problems.length > 0) {
      const msg = `cannot join: ${problems.join('; ')}`
      if (msg !== this.joinError)
        this.log.error({ problems }, 'cannot adopt the cluster replicaset: not joining')
      this.joinError = msg
      this.joinState = 'joining'
      this.adoptFailed = true
      return
    }
    this.adoptFailed = false
    // the tables' sequences are striped before they join here: no write takes an id between
    if (this.init.striper && !(await this.init.striper.ensure(snap.tables))) return
    const changed = await local.cluster.adoptSnapshot(snap)
    this.version = snap.version
    this.log.info(
      { from: from.nodeId, version: snap.version, ...changed },
      'adopted the cluster replicaset',
    )
    // adopted from a ready member: never a founder, even if members look suspect right now
    await this.arrive(this.init.membership.members(), true)
    if (this.joinState === 'joining') return
    await local
      .refreshAll()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'refresh after adopt'))
    // members already subscribed to this node must see its publication's new tables; one
    // that is away or slow now is asked again on the next passes until it answers (else it
    // would never receive this node's rows of those tables)
    for (const m of this.init.membership.members()) this.owedRefresh.add(m.nodeId)
    await this.askRefresh()
  }

  /** Ask the members that owe a refresh of their subscription to this node; keep the rest. */
  private async askRefresh(): Promise<void> {
    const { membership, mesh, nodeId } = this.init
    const asked = membership
      .active()
      .filter((m) => this.owedRefresh.has(m.nodeId) && !this.removed.has(m.nodeId))
    const req = { method: 'subscriptions.refresh', params: { node: nodeId } }
    for (const { member: m, r } of await fanOut(mesh, asked, req, 5000)) {
      if (r.ok) this.owedRefresh.delete(m.nodeId)
      else this.log.debug({ node: m.nodeId, err: r.error.message }, 'refresh request failed')
    }
    for (const n of this.owedRefresh) if (this.removed.has(n)) this.owedRefresh.delete(n)
  }

  /** Every reason a snapshot's table cannot be replicated here, named exactly. */
  private async check(snap: cs.ReplicasetSnapshot, from: number): Promise<string[]> {
    const { tables } = this.init.local
    const each = snap.tables.map(({ schema, table, columns }) =>
      tables.tableProblems({ schema, table }, { columns, from }),
    )
    return (await Promise.all(each)).flat()
  }

  /** Why subscribing to a member failed, if it does (status). */
  subscribeErrors(): Map<number, string> {
    return this.failing
  }
}
