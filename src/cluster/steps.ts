// What one node does for a proposal, whoever coordinates it: validate, raise the write fence
// and record (prepare: a node that cannot fence the table votes no, so the change aborts
// everywhere instead of going ahead beside unfenced writers), then the commit steps (fence
// again if a re-drive needs it, publish, refresh, unfence), each idempotent so a retry or a
// re-drive after a crash is safe. A fence is never held longer than fenceMaxMs, even if the
// coordinator vanishes: writers must not wait forever; a table that then joins is checked soon
// (rows written here meanwhile reached no peer).
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import { Fence, FenceSet } from '../postgres/fence.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import type { TableContent } from '../postgres/join-copy.js'
import type { LocalNode } from '../postgres/local.js'
import type { UsedValue } from '../postgres/sequences.js'
import { contentVote, copyRows } from './copy-plan.js'
import type { Step } from './proposals.js'
import type { SequenceStriper } from './sequences.js'

const FENCE_MAX_MS = 15_000
/** while a joining table's rows are copied, every node's fence stands at most this long */
export const COPY_FENCE_MAX_MS = 300_000
/** a cluster DDL's statement waits this long for a lock before the change aborts */
export const DDL_LOCK_TIMEOUT_MS = 5000
/** and runs at most this long (an index on a big table takes a while) */
export const DDL_STATEMENT_TIMEOUT_MS = 60_000

export interface StepsInit {
  local: LocalNode
  nodeId: number
  log: Logger
  fenceMaxMs?: number
  /** test-only (testing.fence = false): no write fence, to show what it prevents */
  noFence?: boolean
  contentHashMs?: number
  /** a member's advertised PostgreSQL (a joining table's rows are copied from there) */
  peerPostgres?: (node: number) => string | undefined
  /** node-striped sequences (absent: sequences are left alone) */
  striper?: SequenceStriper
  /** the replicaset's version moved here (a change published or committed) */
  onApplied?: () => void
  /** told as a prepare, abort or step begins and as it ends (recovery looks at once) */
  onActivity?: () => void
  /** a table ("schema.table") that joined after its fence here was lowered by its time limit */
  checkSoon?: (relation: string) => void
}

/** A node's vote on a proposal; a table joining tells what it holds here (copy-plan.ts). */
export interface Vote {
  ack: boolean
  reason?: string
  content?: TableContent
}

export class Steps {
  private readonly init: StepsInit
  private readonly log: Logger
  private readonly fences = new Map<string, { fence: Fence | FenceSet; timer: NodeJS.Timeout }>()
  /** fence triggers that could not be dropped when their fence was lowered (a lock elsewhere) */
  private readonly lingering = new Map<string, RelationName>()
  private readonly loweredLate = new Set<string>() // fences lowered by their time limit
  private sweeping: Promise<void> = Promise.resolve()

  constructor(init: StepsInit) {
    this.init = init
    this.log = init.log.child({ component: 'steps' })
  }

  private async active<T>(work: () => Promise<T>): Promise<T> {
    this.init.onActivity?.()
    try {
      return await work()
    } finally {
      this.init.onActivity?.()
    }
  }

  /**
   * Validate the proposal here, fence the table and record the proposal; the answer is the
   * vote. The checks run at once; a table change's triggers, trial publish and record go in
   * the transaction that raises its fence (every member's prepare is on every change's path).
   */
  async prepare(p: cs.Proposal): Promise<Vote> {
    return await this.active(() => this.doPrepare(p))
  }

  private async doPrepare(p: cs.Proposal): Promise<Vote> {
    const { local } = this.init
    const refused = await this.refuse(p)
    const fenced = this.fences.has(p.id) // a prepare asked again: the fence stands
    const reason =
      refused ??
      (await this.fence(p, true).then(
        () => undefined,
        (err: Error) => err.message,
      ))
    if (reason !== undefined) {
      this.log.info({ proposal: p.id, reason }, 'proposal refused')
      return { ack: false, reason: `node ${this.init.nodeId}: ${reason}` }
    }
    // with no fence raised here (held already, or a schema change's, or no fence in tests),
    // nothing recorded the proposal yet
    if (fenced || p.op === 'ddl' || this.init.noFence) {
      try {
        if (p.op === 'add') await local.lwwTriggers.install({ schema: p.schema, table: p.table })
        await local.cluster.recordProposal(p)
      } catch (err) {
        await this.unfence(p.id)
        throw err
      }
    }
    if (p.op !== 'add') return { ack: true }
    // what the table holds behind the fence (copy-plan.ts)
    const told = await contentVote(local, p, this.init.contentHashMs)
    if ('content' in told) return { ack: true, content: told.content }
    await this.unfence(p.id)
    return { ack: false, reason: `node ${this.init.nodeId}: ${told.reason}` }
  }

  private async refuse(p: cs.Proposal): Promise<string | undefined> {
    const { local } = this.init
    const rel = { schema: p.schema, table: p.table }
    if (!(await local.initialized())) return 'not initialised' // remembered once true
    const table = { rel, columns: p.columns, from: p.coordinator }
    const facts = await local.cluster.prepareFacts(p.id, p.op === 'add' ? table : undefined)
    if (facts.known === 'abort') return 'proposal already aborted here'
    if (facts.known) return undefined
    if (facts.base !== p.version - 1) {
      return `replicaset version gap: this node is at version ${facts.base}, the proposal makes version ${p.version}`
    }
    if (facts.open) return `busy with proposal ${facts.open.id} (version ${facts.open.version})`
    if (p.op === 'ddl' && facts.maxPrepared === 0)
      return 'max_prepared_transactions is 0 here: cluster DDL prepares its statement on every node (set it to 10 or more and restart PostgreSQL)'
    return facts.problems.length > 0 ? facts.problems.join('; ') : undefined
  }

  /** Decide ABORT here (recording it first if given), roll back its prepared schema change
   * and lower its fence. Returns whether a prepared statement was rolled back. */
  async abort(id: string, p?: cs.Proposal): Promise<boolean> {
    return await this.active(() => this.doAbort(id, p))
  }

  private async doAbort(id: string, p?: cs.Proposal): Promise<boolean> {
    this.loweredLate.delete(id)
    await this.init.local.cluster.decide(id, 'abort', p).catch(() => undefined)
    const rolled = await this.init.local.schemaChange.rollbackDdl(id).catch((err: Error) => {
      this.log.error(
        { proposal: id, err: err.message },
        'cannot roll back a prepared schema change',
      )
      return false
    })
    const fenced = this.fences.has(id)
    await this.unfence(id)
    if (rolled) {
      this.log.info({ proposal: id }, 'prepared schema change rolled back')
      // after a restart no fence is held here, but the rolled-back transaction restored the
      // fence triggers it had dropped: they go now
      if (!fenced) {
        const p = await this.init.local.cluster.getProposal(id)
        for (const rel of p?.ddl?.fenced ?? [])
          await this.init.local.fences.dropFenceTrigger(rel).catch(() => this.linger([rel]))
      }
    }
    return rolled
  }

  /**
   * A schema change's second vote, once every node is fenced and drained: run the statement and
   * PREPARE it. From then on its locks hold the tables, so the fence's time limit no longer
   * applies (writers wait for the decision; recovery ends an orphan).
   */
  async prepareDdl(p: cs.Proposal): Promise<{ ack: boolean; reason?: string }> {
    return await this.active(() => this.doPrepareDdl(p))
  }

  private async doPrepareDdl(p: cs.Proposal): Promise<{ ack: boolean; reason?: string }> {
    const spec = p.ddl
    if (!spec) return { ack: false, reason: `node ${this.init.nodeId}: not a schema change` }
    const mine = await this.init.local.cluster.getProposal(p.id)
    if (mine?.decision === 'abort')
      return { ack: false, reason: `node ${this.init.nodeId}: proposal already aborted here` }
    const f = this.fences.get(p.id)
    if (f) clearTimeout(f.timer)
    const started = Date.now()
    try {
      await this.init.local.schemaChange.prepareDdl({
        id: p.id,
        coordinator: p.coordinator,
        spec,
        lockTimeoutMs: DDL_LOCK_TIMEOUT_MS,
        statementTimeoutMs: DDL_STATEMENT_TIMEOUT_MS,
        remake: (q, rel) => this.init.local.lwwTriggers.remakeIn(q, rel),
        onLockWait: async () => {
          if (f?.fence instanceof FenceSet) {
            this.log.info(
              { proposal: p.id },
              'schema change waits for fenced writers: failing them',
            )
            await f.fence.cancelWaiters()
          }
        },
      })
    } catch (err) {
      const reason = (err as Error).message
      this.log.info({ proposal: p.id, reason }, 'schema change refused')
      return { ack: false, reason: `node ${this.init.nodeId}: ${reason}` }
    }
    this.log.info({ proposal: p.id, ms: Date.now() - started }, 'schema change prepared')
    return { ack: true }
  }

  /** Lower this proposal's fence (a committed schema change learned from a peer). */
  async release(id: string): Promise<void> {
    await this.unfence(id)
  }

  /** Sequences are striped when tables join (the coordinator gathers the floors). */
  get striping(): boolean {
    return this.init.striper?.enabled === true
  }

  /** What this node's sequences of these tables handed out. */
  async used(rels: Array<{ schema: string; table: string }>): Promise<UsedValue[]> {
    return (await this.init.striper?.used(rels)) ?? []
  }

  /** Run one commit step here (`floors`: the stripe step's values gathered from every member). */
  async run(p: cs.Proposal, step: Step, floors?: Record<string, string>): Promise<void> {
    return await this.active(() => this.doRun(p, step, floors))
  }

  private async doRun(p: cs.Proposal, step: Step, floors?: Record<string, string>): Promise<void> {
    const { local } = this.init
    switch (step) {
      case 'fence':
        return await this.fence(p)
      case 'stripe':
        // behind the fence, before the table is published: no write takes an unstriped id
        if (p.op === 'add' && floors && this.init.striper) {
          await this.fence(p)
          await this.init.striper.stripeTable({ schema: p.schema, table: p.table }, floors)
        }
        return
      case 'copy':
        return await this.copy(p)
      // a table joins or leaves the publication behind this node's fence (up since prepare,
      // raised again on a re-drive); a schema change commits its prepared statement
      case 'publish':
        await this.fence(p)
        await local.cluster.publishProposal(p)
        this.init.onApplied?.()
        return
      case 'commit-ddl':
        await local.cluster.recordProposal(p)
        await local.cluster.decide(p.id, 'commit')
        await local.cluster.applyProposal(p)
        this.init.onApplied?.()
        return
      case 'refresh':
        await local.refreshAll({ triggers: false }) // installed at prepare
        return
      case 'unfence':
        await this.unfence(p.id)
        if (this.loweredLate.delete(p.id) && p.op === 'add')
          this.init.checkSoon?.(`${p.schema}.${p.table}`)
        return
    }
  }

  /** Rows of a joining table copied where it is empty, every node fenced meanwhile (copy-plan.ts). */
  private async copy(p: cs.Proposal): Promise<void> {
    if (p.op !== 'add' || !p.copy) return
    await this.fence(p)
    this.hold(p.id, COPY_FENCE_MAX_MS)
    if (p.copy.node === this.init.nodeId) return
    await copyRows({ ...this.init, log: this.log }, p, p.copy)
  }

  /** Let the proposal's fence stand up to ms from now (a long step with its coordinator alive). */
  private hold(id: string, ms: number): void {
    const f = this.fences.get(id)
    if (!f) return
    clearTimeout(f.timer)
    f.timer = setTimeout(() => this.lowerLate(id), ms)
  }

  /** Raise the proposal's fence here, unless it is up; `prepare`: prepared with it (LocalNode.fence). */
  private async fence(p: cs.Proposal, prepare = false): Promise<void> {
    if (this.fences.has(p.id) || this.init.noFence) return
    // a sweep of left-behind triggers never runs across a raise: the new trigger is the fence's
    await this.sweeping
    const rels = p.op === 'ddl' ? (p.ddl?.fenced ?? []) : [{ schema: p.schema, table: p.table }]
    for (const rel of rels) this.lingering.delete(formatRelation(rel))
    if (p.op === 'ddl') return await this.fenceSet(p)
    const fence = this.init.local.fence(
      { schema: p.schema, table: p.table },
      prepare ? p : undefined,
    )
    const timer = setTimeout(() => this.lowerLate(p.id), this.init.fenceMaxMs ?? FENCE_MAX_MS)
    // registered before it is raised, so that an abort arriving meanwhile cancels it
    this.fences.set(p.id, { fence, timer })
    try {
      await fence.raise()
    } catch (err) {
      if (this.fences.get(p.id)?.fence === fence) this.fences.delete(p.id)
      clearTimeout(timer)
      throw err
    }
  }

  /** A schema change fences every replicated table it changes, in one held session. */
  private async fenceSet(p: cs.Proposal): Promise<void> {
    const tables = p.ddl?.fenced ?? []
    if (tables.length === 0) return
    const fence = this.init.local.fenceSet()
    const timer = setTimeout(() => this.lowerLate(p.id), this.init.fenceMaxMs ?? FENCE_MAX_MS)
    this.fences.set(p.id, { fence, timer })
    const failed = await fence.raise(tables).catch(async (err: Error) => {
      this.linger(await fence.lower())
      return [{ rel: tables[0], err: err.message }]
    })
    if (failed.length > 0) {
      if (this.fences.get(p.id)?.fence === fence) this.fences.delete(p.id)
      clearTimeout(timer)
      this.linger(await fence.lower())
      const [first] = failed
      throw new Error(
        `cannot fence ${first?.rel ? formatRelation(first.rel) : 'the tables'}: ${first?.err}`,
      )
    }
  }

  /** The fence's time limit ran out (its coordinator gone?): lowered, and remembered (run). */
  private lowerLate(id: string): void {
    this.log.error({ proposal: id }, 'fence held too long (coordinator gone?): lowering it')
    this.loweredLate.add(id)
    void this.unfence(id)
  }

  private async unfence(id: string): Promise<void> {
    const f = this.fences.get(id)
    if (!f) return
    this.fences.delete(id)
    clearTimeout(f.timer)
    this.linger(await f.fence.lower())
  }

  private linger(rels: readonly RelationName[]): void {
    for (const rel of rels) {
      const key = formatRelation(rel)
      if (!this.lingering.has(key))
        this.log.warn({ relation: key }, 'fence trigger not dropped (a lock elsewhere): retrying')
      this.lingering.set(key, rel)
    }
  }

  /**
   * Drop the fence triggers left behind by lowered fences (they block no one, but stay on the
   * table), except on a table fenced again meanwhile. Called by the recovery loop.
   */
  sweep(): Promise<void> {
    if (this.lingering.size === 0) return this.sweeping
    this.sweeping = this.sweeping.then(async () => {
      const fenced = new Set<string>()
      for (const { fence } of this.fences.values()) {
        const rels = fence instanceof Fence ? [fence.rel] : fence.tables
        for (const rel of rels) fenced.add(formatRelation(rel))
      }
      for (const [key, rel] of [...this.lingering]) {
        if (fenced.has(key)) {
          this.lingering.delete(key)
          continue
        }
        const ok = await this.init.local.fences.dropFenceTrigger(rel).then(
          () => true,
          () => false,
        )
        if (ok && this.lingering.get(key) === rel) {
          this.lingering.delete(key)
          this.log.info({ relation: key }, 'dropped a fence trigger left behind')
        }
      }
    })
    return this.sweeping
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.fences.keys()].map((id) => this.unfence(id)))
  }
}
