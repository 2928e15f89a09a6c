// The automatic mesh: a node that starts adopts the cluster's replicaset (or says exactly
// why it cannot, and does not half-join), then subscribes to every stable ready member with
// the member's advertised connection string and its own peerPassword. Subscriptions to
// removed nodes are dropped. Runs every tick and whenever membership changes.
import type { Logger } from '../log.js'
import * as cs from '../postgres/cluster-state.js'
import type { LocalNode } from '../postgres/local.js'
import { refusals, tableInfo } from '../postgres/replicaset.js'
import type { JoinState, Member, Membership } from './membership.js'
import type { MeshPort } from './port.js'

const TICK_MS = 500

export interface ReconcilerInit {
  local: LocalNode
  membership: Membership
  mesh: MeshPort
  nodeId: number
  log: Logger
  /** with no member heard within this time, a fresh node founds the cluster */
  joinGraceMs: number
}

export class Reconciler {
  private readonly init: ReconcilerInit
  private readonly log: Logger
  joinState: JoinState = 'joining'
  joinError: string | undefined
  version = 0
  private startedMs = 0
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private readonly failing = new Map<number, string>()

  constructor(init: ReconcilerInit) {
    this.init = init
    this.log = init.log.child({ component: 'reconcile' })
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
    await this.running
  }

  /** Run a pass now (or once more right after the one running). */
  kick(): void {
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.pass()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'reconcile pass failed'))
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
    const removed = new Set(await cs.removedNodes(local.db))
    if (removed.has(nodeId)) {
      if (this.joinState !== 'removed') this.log.warn('this node was removed from the cluster')
      this.joinState = 'removed'
      for (const s of await local.subscriptions()) await local.unsubscribe(s.peer)
      return
    }
    this.version = await cs.replicasetVersion(local.db)
    const members = membership.members().filter((m) => !removed.has(m.nodeId) && !m.duplicate)
    const ahead = members
      .filter(
        (m) => m.state === 'alive' && m.joinState === 'ready' && m.replicasetVersion > this.version,
      )
      .sort((a, b) => b.replicasetVersion - a.replicasetVersion)[0]
    if (ahead) {
      await this.adopt(ahead)
    } else if (this.joinState === 'joining' && this.joinError === undefined) {
      const readyPeer = members.some((m) => m.state === 'alive' && m.joinState === 'ready')
      if (readyPeer || Date.now() - this.startedMs >= this.init.joinGraceMs) this.becomeReady()
    }
    if (this.joinState !== 'ready') return
    await this.wireSubscriptions(members, removed)
  }

  private becomeReady(): void {
    if (this.joinState === 'ready') return
    this.joinState = 'ready'
    this.joinError = undefined
    this.log.info({ version: this.version }, 'node is ready')
  }

  /** Take a member's replicaset (join, or catch up after missing changes). */
  private async adopt(from: Member): Promise<void> {
    const { local, mesh } = this.init
    const r = await mesh.request(
      from.peerId,
      { method: 'replicaset.get', params: {} },
      { timeoutMs: 3000 },
    )
    if (!r.ok)
      throw new Error(`cannot read the replicaset from node ${from.nodeId}: ${r.error.message}`)
    const snap = r.result as cs.ReplicasetSnapshot
    const problems = await this.check(snap, from.nodeId)
    if (problems.length > 0) {
      const msg = `cannot join: ${problems.join('; ')}`
      if (msg !== this.joinError)
        this.log.error({ problems }, 'cannot adopt the cluster replicaset: not joining')
      this.joinError = msg
      this.joinState = 'joining'
      return
    }
    const changed = await cs.adoptSnapshot(local.db, snap)
    this.version = snap.version
    this.log.info(
      { from: from.nodeId, version: snap.version, ...changed },
      'adopted the cluster replicaset',
    )
    this.becomeReady()
    await local
      .refreshAll()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'refresh after adopt'))
    // members already subscribed to this node must see its publication's new tables
    await Promise.all(
      this.init.membership
        .active()
        .map((m) =>
          mesh.request(
            m.peerId,
            { method: 'subscriptions.refresh', params: { node: this.init.nodeId } },
            { timeoutMs: 5000 },
          ),
        ),
    )
  }

  /** Every reason a snapshot's table cannot be replicated here, named exactly. */
  private async check(snap: cs.ReplicasetSnapshot, from: number): Promise<string[]> {
    const { db } = this.init.local
    const [role] = await db.query<{ role: string }>('SELECT current_user AS role')
    const problems: string[] = []
    for (const t of snap.tables) {
      const rel = { schema: t.schema, table: t.table }
      const info = await tableInfo(db, rel).catch(() => undefined)
      const why = refusals(rel, info, role?.role ?? '?')
      if (why.length > 0) problems.push(...why)
      else if (info && info.columns.join(', ') !== t.columns.join(', ')) {
        problems.push(
          `table ${t.relation} differs: here (${info.columns.join(', ')}), on node ${from} (${t.columns.join(', ')})`,
        )
      }
    }
    return problems
  }

  private async wireSubscriptions(members: Member[], removed: Set<number>): Promise<void> {
    const { local, membership } = this.init
    const current = await local.subscriptions()
    for (const s of current) {
      if (removed.has(s.peer)) await local.unsubscribe(s.peer)
    }
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
