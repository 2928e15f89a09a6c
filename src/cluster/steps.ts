// What one node does for a proposal, whoever coordinates it: validate and record (prepare),
// then the commit steps (fence, publish, refresh, unfence), each idempotent so a retry or a
// re-drive after a crash is safe. A fence is never held longer than fenceMaxMs, even if the
// coordinator vanishes: writers must not wait forever.
import type { Logger } from '../log.js'
import * as cs from '../postgres/cluster-state.js'
import { Fence } from '../postgres/fence.js'
import { formatRelation } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { refusals, tableInfo } from '../postgres/replicaset.js'
import type { Step } from './proposals.js'

const FENCE_MAX_MS = 15_000

export interface StepsInit {
  local: LocalNode
  conninfo: string
  nodeId: number
  log: Logger
  fenceMaxMs?: number
}

export class Steps {
  private readonly init: StepsInit
  private readonly log: Logger
  private readonly fences = new Map<string, { fence: Fence; timer: NodeJS.Timeout }>()

  constructor(init: StepsInit) {
    this.init = init
    this.log = init.log.child({ component: 'steps' })
  }

  /** Validate the proposal here and record it durably; the answer is the vote. */
  async prepare(p: cs.Proposal): Promise<{ ack: boolean; reason?: string }> {
    const reason = await this.refuse(p)
    if (reason !== undefined) {
      this.log.info({ proposal: p.id, reason }, 'proposal refused')
      return { ack: false, reason: `node ${this.init.nodeId}: ${reason}` }
    }
    await cs.recordProposal(this.init.local.db, p)
    return { ack: true }
  }

  private async refuse(p: cs.Proposal): Promise<string | undefined> {
    const { db } = this.init.local
    if (!(await this.init.local.initialized())) return 'not initialised'
    const existing = await cs.getProposal(db, p.id)
    if (existing?.decision === 'abort') return 'proposal already aborted here'
    if (existing) return undefined
    const version = await cs.replicasetVersion(db)
    if (version !== p.version - 1) {
      return `replicaset version gap: this node is at version ${version}, the proposal makes version ${p.version}`
    }
    const open = await cs.openProposals(db, p.id)
    if (open.length > 0) return `busy with proposal ${open[0]?.id} (version ${open[0]?.version})`
    const rel = { schema: p.schema, table: p.table }
    if (p.op === 'remove') return undefined
    const [role] = await db.query<{ role: string }>('SELECT current_user AS role')
    const info = await tableInfo(db, rel)
    const why = refusals(rel, info, role?.role ?? '?')
    if (why.length > 0) return why.join('; ')
    const mine = info?.columns.join(', ') ?? ''
    const theirs = p.columns.join(', ')
    if (mine !== theirs) {
      return `table ${formatRelation(rel)} differs: here (${mine}), on node ${p.coordinator} (${theirs})`
    }
    return undefined
  }

  async abort(id: string): Promise<void> {
    await cs.decide(this.init.local.db, id, 'abort').catch(() => undefined)
    await this.unfence(id)
  }

  /** Run one commit step here. */
  async run(p: cs.Proposal, step: Step): Promise<void> {
    const { local } = this.init
    switch (step) {
      case 'fence':
        return await this.fence(p)
      case 'publish':
        await cs.recordProposal(local.db, p)
        await cs.decide(local.db, p.id, 'commit')
        await cs.applyProposal(local.db, p)
        return
      case 'refresh':
        await local.refreshAll()
        return
      case 'unfence':
        return await this.unfence(p.id)
    }
  }

  private async fence(p: cs.Proposal): Promise<void> {
    if (this.fences.has(p.id)) return
    const fence = new Fence({
      conninfo: this.init.conninfo,
      nodeId: this.init.nodeId,
      rel: { schema: p.schema, table: p.table },
    })
    await fence.raise()
    const timer = setTimeout(() => {
      this.log.error({ proposal: p.id }, 'fence held too long (coordinator gone?): lowering it')
      void this.unfence(p.id)
    }, this.init.fenceMaxMs ?? FENCE_MAX_MS)
    this.fences.set(p.id, { fence, timer })
  }

  private async unfence(id: string): Promise<void> {
    const f = this.fences.get(id)
    if (!f) return
    this.fences.delete(id)
    clearTimeout(f.timer)
    await f.fence.lower()
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.fences.keys()].map((id) => this.unfence(id)))
  }
}
