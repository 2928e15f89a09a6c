// The automatic mesh: a node that starts learns the cluster's roster (was it removed?) and
// adopts the cluster's replicaset (or says exactly why it cannot, and does not half-join),
// then subscribes to every stable ready member with the member's advertised connection
// string and its own peerPassword. Removals stick: the roster of removed nodes is merged from
// any member that knows a newer one, subscriptions to and slots of removed nodes are dropped,
// and a removed node that still acts as a member is told. Runs every tick and whenever
// membership changes.
import { z } from 'zod'
import type { JoinMode } from '../config/types.js'
import { ConflictError, type TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import * as cs from '../postgres/cluster-state.js'
import { formatRelation } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { JoinCopy, type JoinProgress, type RunOptions } from './join.js'
import { decideJoin } from './join-decide.js'
import type { JoinState, Member, Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import { decidePass, rosterSource } from './reconcile-decide.js'
import { answerOf } from './rpc-results.js'
import type { SequenceStriper } from './sequences.js'

const TICK_MS = 500
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

const COPY_RETRY_MS = 1000
const COPY_RETRY_MAX_MS = 10_000

export class Reconciler {
  private readonly init: ReconcilerInit
  private readonly log: Logger
  joinState: JoinState = 'joining'
  joinError: string | undefined
  /** the last adopt failed its checks (and set joinError) */
  private adoptFailed = false
  version = 0
  /** nodes removed from the cluster (this one included, if it was) */
  removed: ReadonlySet<number> = new Set()
  rosterVersion = 0
  /** the last pass reached PostgreSQL (members see it in the heartbeat) */
  postgresUp = true
  private startedMs = 0
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private readonly failing = new Map<number, string>()
  /** members not yet known to have refreshed their subscription to this node after an adopt */
  private readonly owedRefresh = new Set<number>()
  /** when a removed member was last told so, per node (rate limit) */
  private readonly told = new Map<number, number>()
  readonly joiner: JoinCopy
  private copy: { abort: AbortController; done: Promise<void> } | undefined

  constructor(init: ReconcilerInit) {
    this.init = init
    this.log = init.log.child({ component: 'reconcile' })
    this.joiner = new JoinCopy({
      local: init.local,
      nodeId: init.nodeId,
      log: init.log,
      candidates: () => this.donors(),
      peers: () => this.livePeers(),
      ...(init.joinPauseMs ? { pauseMs: init.joinPauseMs } : {}),
      ...(init.onJoinProgress ? { onProgress: init.onJoinProgress } : {}),
    })
  }

  /** While copying the cluster's data: how far, for the heartbeat and /v1/cluster/nodes. */
  joinProgress(): JoinProgress | undefined {
    return this.joinState === 'copying' ? this.joiner.progress : undefined
  }

  start(): void {
    if (this.timer) return
    this.startedMs = Date.now()
    this.timer = setInterval(() => this.kick(), TICK_MS)
    this.kick()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
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
    if (!(await local.initialized())) await local.initNode()
    await this.loadRoster()
    await this.syncRoster()
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
    await this.tellRemoved()
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
    if (verdict.kind === 'adopt') await this.adopt(verdict.from)
    else if (verdict.kind === 'arrive') {
      this.adoptFailed = false
      this.joinError = undefined
      await this.arrive(members)
    }
    if (this.joinState !== 'ready') return
    // the cluster grew past the stride, or a sequence was reset by hand: stripe again
    await this.init.striper?.ensure()
    await this.wireSubscriptions(members)
    if (this.owedRefresh.size > 0) await this.askRefresh()
  }

  private async loadRoster(): Promise<void> {
    const entries = await this.init.local.cluster.roster()
    this.removed = new Set(entries.filter(cs.isRemovedEntry).map((e) => e.node))
    this.rosterVersion = cs.rosterVersion(entries)
  }

  /**
   * Merge the roster of a member that knows a newer one. A node still joining asks a ready
   * member even without a newer version: a node removed while it was down must learn it before
   * it subscribes to anyone.
   */
  private async syncRoster(): Promise<void> {
    const alive = this.init.membership.members().filter((m) => m.state === 'alive' && !m.duplicate)
    const source = rosterSource(alive, this.rosterVersion, this.joinState)
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
    const { changed } = await this.mergeRoster(parsed.data)
    if (changed.length > 0) {
      this.log.info({ from: source.nodeId, nodes: changed }, 'learned roster changes from a member')
    }
  }

  /** A member that is removed but still acts as one (it was away): tell it, now and then. */
  private async tellRemoved(): Promise<void> {
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
  async mergeRoster(entries: readonly cs.RosterEntry[]): Promise<{ changed: number[] }> {
    const { local, nodeId } = this.init
    const changed = await local.cluster.mergeRoster(entries)
    await this.loadRoster()
    for (const node of changed) {
      if (node === nodeId || !this.removed.has(node)) continue
      for (const m of this.init.membership.members()) {
        if (m.nodeId === node) this.init.mesh.forgetPeer?.(m.peerId)
      }
      if ((await local.subscriptions()).some((s) => s.peer === node)) await local.unsubscribe(node)
      await local.dropSlotOf(node)
    }
    if (changed.length > 0) this.kick()
    return { changed }
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

  /** Live ready members a new node copies from and subscribes to. */
  /** every other live node of the cluster, whatever its join state */
  private livePeers(): Member[] {
    return this.init.membership
      .members()
      .filter(
        (m) =>
          m.state !== 'dead' &&
          !m.duplicate &&
          m.joinState !== 'removed' &&
          m.nodeId !== this.init.nodeId &&
          !this.removed.has(m.nodeId),
      )
  }

  private donors(): Member[] {
    return this.init.membership
      .members()
      .filter(
        (m) =>
          m.joinState === 'ready' &&
          m.postgresUp &&
          !this.removed.has(m.nodeId) &&
          this.init.membership.isStable(m),
      )
  }

  /**
   * A node about to be ready: a member before is ready at once; a new one copies the
   * cluster's data first, or refuses to join (decideJoin says which, and why).
   */
  private async arrive(members: Member[], adopted = false): Promise<void> {
    if (this.joinState !== 'joining') return
    const { local } = this.init
    const mode = this.init.join ?? 'empty-only'
    const marker = await local.joinCopy.readMarker()
    const tables = await local.joinCopy.replicatedTables()
    const occupied =
      marker === undefined && mode !== 'no-copy' ? await local.joinCopy.occupied(tables) : []
    const d = decideJoin({
      mode,
      marker,
      subscriptions: (await local.subscriptions()).length,
      readyPeers: Math.max(
        adopted ? 1 : 0,
        members.filter((m) => m.state === 'alive' && m.joinState === 'ready').length,
      ),
      tables: tables.length,
      occupied: occupied.map((o) => ({ table: formatRelation(o.rel), rows: o.rows })),
    })
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
    const abort = new AbortController()
    let opts = first
    const loop = async () => {
      let delay = COPY_RETRY_MS
      while (!abort.signal.aborted && this.joinState === 'copying') {
        try {
          if (await this.joiner.fenceLost()) {
            // as after a restart of the arbiter: emptied, slots made anew, fenced again
            this.log.warn(
              'the fence of local writers was lost (PostgreSQL restarted): the copy starts over from its first step',
            )
            await this.joiner.lowerFences().catch(() => undefined)
            opts = { ...opts, clear: true }
          }
          await this.joiner.run(abort.signal, opts)
          // the members' slots here were made before the fence: local writers go on at once
          await this.joiner.release()
          while (!abort.signal.aborted && !(await this.becomeReady())) {
            await new Promise((r) => setTimeout(r, COPY_RETRY_MS))
          }
          this.kick()
          return
        } catch (err) {
          if (abort.signal.aborted) return
          const msg = (err as Error).message
          if ((err as TraktorError).code === 'ERR_JOIN_REFUSED') {
            await this.refuseCopy(msg)
            return
          }
          this.joiner.progress.lastError = msg
          this.joinError = `the copy of the cluster data failed (attempt ${this.joiner.progress.attempt}, trying again): ${msg}`
          this.log.warn({ err: msg, attempt: this.joiner.progress.attempt }, 'join copy failed')
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, COPY_RETRY_MAX_MS)
        }
      }
    }
    const done = loop().finally(async () => {
      await this.joiner.lowerFences().catch(() => undefined)
      if (this.copy?.abort === abort) this.copy = undefined
    })
    this.copy = { abort, done }
  }

  /** Rows written here as the join began: back to joining, as if they had been there before. */
  private async refuseCopy(msg: string): Promise<void> {
    await this.joiner.lowerFences().catch(() => undefined)
    await this.init.local.joinCopy.deleteMarker()
    const dropped = await this.init.local.joinSlots.dropUnusedJoinSlots()
    this.joinError = msg
    this.joinState = 'joining'
    this.log.error({ dropped }, msg)
  }

  private async stopCopy(): Promise<void> {
    const c = this.copy
    if (!c) return
    c.abort.abort()
    await c.done
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
    const problems: string[] = []
    for (const t of snap.tables) {
      const rel = { schema: t.schema, table: t.table }
      problems.push(
        ...(await this.init.local.tables.tableProblems(rel, { columns: t.columns, from })),
      )
    }
    return problems
  }

  private async wireSubscriptions(members: Member[]): Promise<void> {
    const { local, membership } = this.init
    const current = await local.subscriptions()
    for (const s of current) {
      if (this.removed.has(s.peer)) await local.unsubscribe(s.peer)
    }
    // a removal this node learned from the roster: the removed node's slot here goes too
    for (const node of this.removed) await local.dropSlotOf(node)
    const have = new Set(current.map((s) => s.peer))
    for (const m of members) {
      if (have.has(m.nodeId) || m.joinState !== 'ready' || !membership.isStable(m)) continue
      try {
        await local.subscribe(m.nodeId, m.postgres)
        this.failing.delete(m.nodeId)
      } catch (err) {
        const msg = (err as Error).message
        if (this.failing.get(m.nodeId) !== msg)
          this.log.warn({ node: m.nodeId, err: msg }, 'cannot subscribe to member')
        this.failing.set(m.nodeId, msg)
      }
    }
  }

  /** Why subscribing to a member failed, if it does (status). */
  subscribeErrors(): Map<number, string> {
    return this.failing
  }
}
