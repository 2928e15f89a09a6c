// Two-phase replicaset changes (DESIGN §5). The node that receives the call coordinates:
// PREPARE to every member (each validates and records the proposal), then — only if all
// acknowledged before the deadline — the coordinator's local decision row (the commit point),
// then the change in steps on every node: fence (writers wait), publish, refresh, unfence.
// Any NACK or timeout → ABORT everywhere, nothing changed. Recovery lives in recovery.ts.
import { randomUUID } from 'node:crypto'
import type { CrashPoint } from '../config/types.js'
import type { Logger } from '../log.js'
import * as cs from '../postgres/cluster-state.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import { tableInfo } from '../postgres/replicaset.js'
import type { UsedValue } from '../postgres/sequences.js'
import type { Member, Membership } from './membership.js'
import type { MeshPort } from './port.js'
import { floorsOf } from './sequences.js'
import type { Steps } from './steps.js'

export type Op = 'add' | 'remove'
export const STEPS = ['fence', 'stripe', 'publish', 'refresh', 'unfence'] as const
export type Step = (typeof STEPS)[number]

export interface NodeVerdict {
  node: number
  ack: boolean
  applied?: boolean
  reason?: string
}

export interface Outcome {
  outcome: 'committed' | 'aborted' | 'unchanged'
  proposalId?: string
  op: Op
  relation: string
  version: number
  nodes: NodeVerdict[]
  reason?: string
  durationMs: number
}

export interface ProposalsInit {
  local: LocalNode
  mesh: MeshPort
  membership: Membership
  /** nodes removed from the cluster take no part, dead or alive */
  isRemoved: (node: number) => boolean
  steps: Steps
  nodeId: number
  log: Logger
  prepareTimeoutMs?: number
  stepTimeoutMs?: number
  onOutcome?: (o: Outcome) => void
  /** test-only (fault suite): kill this process at that point of a proposal */
  crashAt?: CrashPoint
}

const PREPARE_TIMEOUT_MS = 5000
const STEP_TIMEOUT_MS = 10_000

export class Proposals {
  private readonly init: ProposalsInit
  private readonly log: Logger
  /** one change at a time from this coordinator */
  private queue: Promise<unknown> = Promise.resolve()
  /** proposals this coordinator is running now (recovery must not abort them) */
  readonly inFlight = new Set<string>()

  constructor(init: ProposalsInit) {
    this.init = init
    this.log = init.log.child({ component: 'proposals' })
  }

  /** Propose a change cluster-wide; resolves with the outcome, never hangs. */
  propose(op: Op, rel: RelationName): Promise<Outcome> {
    const run = this.queue.then(() => this.run(op, rel))
    this.queue = run.catch(() => undefined)
    return run
  }

  private async run(op: Op, rel: RelationName): Promise<Outcome> {
    const started = Date.now()
    const { local, nodeId } = this.init
    const relation = formatRelation(rel)
    const version = await cs.versionBase(local.db)
    const done = (o: Omit<Outcome, 'durationMs' | 'op' | 'relation'>): Outcome => {
      const out = { ...o, op, relation, durationMs: Date.now() - started }
      this.init.onOutcome?.(out)
      return out
    }
    const snapshot = await cs.replicasetSnapshot(local.db)
    const present = snapshot.tables.some((t) => t.schema === rel.schema && t.table === rel.table)
    if ((op === 'add' && present) || (op === 'remove' && !present)) {
      return done({ outcome: 'unchanged', version, nodes: [] })
    }
    const members = this.participants()
    const blocked = members.filter((m) => m.state !== 'alive' || m.duplicate || !m.postgresUp)
    if (blocked.length > 0) {
      const nodes = blocked.map((m) => ({ node: m.nodeId, ack: false, reason: unusable(m) }))
      return done({ outcome: 'aborted', version, nodes, reason: 'not every member can take part' })
    }
    const info = await tableInfo(local.db, rel)
    const proposal: cs.Proposal = {
      id: randomUUID(),
      version: version + 1,
      op,
      schema: rel.schema,
      table: rel.table,
      columns: info?.columns ?? [],
      coordinator: nodeId,
    }
    this.inFlight.add(proposal.id)
    try {
      return await this.twoPhase(proposal, members, version, done)
    } finally {
      this.inFlight.delete(proposal.id)
    }
  }

  private async twoPhase(
    proposal: cs.Proposal,
    members: Member[],
    version: number,
    done: (o: Omit<Outcome, 'durationMs' | 'op' | 'relation'>) => Outcome,
  ): Promise<Outcome> {
    const { local, nodeId } = this.init
    const relation = formatRelation({ schema: proposal.schema, table: proposal.table })
    const op = proposal.op
    const started = Date.now()
    // phase 1: validate and record here, then everywhere
    const own = await this.init.steps.prepare(proposal)
    const verdicts: NodeVerdict[] = [{ node: nodeId, ...own }]
    if (own.ack) {
      const pending = members.map((m) => this.prepareOn(m, proposal))
      if (this.init.crashAt === 'prepare-sent') await this.crash('prepare-sent', 30)
      if (this.init.crashAt === 'some-acks')
        void Promise.race(pending).then(() => this.crash('some-acks'))
      verdicts.push(...(await Promise.all(pending)))
    }
    if (!verdicts.every((v) => v.ack)) {
      // recorded (if it was not) and decided ABORT here, and our own fence lowered at once
      await this.init.steps.abort(proposal.id, proposal)
      await Promise.all(
        members.map((m) => this.call(m, 'proposal.abort', { id: proposal.id }, PREPARE_TIMEOUT_MS)),
      )
      this.log.info({ proposal: proposal.id, relation, op, verdicts }, 'proposal aborted')
      return done({
        outcome: 'aborted',
        proposalId: proposal.id,
        version,
        nodes: verdicts,
        reason: 'a member refused',
      })
    }
    // the commit point: from here on the change is driven to the end
    const decision = await cs.decide(local.db, proposal.id, 'commit')
    if (this.init.crashAt === 'decision') await this.crash('decision')
    if (decision !== 'commit') {
      await this.init.steps.abort(proposal.id)
      return done({
        outcome: 'aborted',
        proposalId: proposal.id,
        version,
        nodes: verdicts,
        reason: 'aborted by recovery',
      })
    }
    const applied = await this.drive(proposal, members)
    const nodes = verdicts.map((v) => ({
      ...v,
      applied: applied.get(v.node) === undefined,
      ...(applied.get(v.node) ? { reason: applied.get(v.node) } : {}),
    }))
    this.log.info(
      { proposal: proposal.id, relation, op, version: proposal.version, ms: Date.now() - started },
      'proposal committed',
    )
    return done({ outcome: 'committed', proposalId: proposal.id, version: proposal.version, nodes })
  }

  /**
   * Run the commit steps on this node and every member, each step everywhere before the next.
   * Returns the nodes that could not finish, with why (they catch up later).
   */
  async drive(p: cs.Proposal, members: readonly Member[]): Promise<Map<number, string>> {
    const failed = new Map<number, string>()
    for (const step of STEPS) {
      const live = members.filter((m) => !failed.has(m.nodeId))
      if (step === 'publish' && this.init.crashAt === 'one-publish') {
        // a true partial commit: one member has published, the others (and we) have not
        const [first] = live
        if (first) await this.call(first, 'proposal.step', { proposal: p, step }, STEP_TIMEOUT_MS)
        await this.crash('one-publish')
      }
      // the values every member's sequences handed out, read behind the fence
      const floors = step === 'stripe' ? await this.floors(p, live) : undefined
      const extra = floors ? { floors } : {}
      const results = await Promise.all([
        this.init.steps.run(p, step, floors).then(
          () => undefined,
          (err: Error) => err.message,
        ),
        ...live.map(async (m) => {
          const r = await this.call(
            m,
            'proposal.step',
            { proposal: p, step, ...extra },
            this.init.stepTimeoutMs ?? STEP_TIMEOUT_MS,
          )
          return r.ok ? undefined : r.error.message
        }),
      ])
      const [mine, ...theirs] = results
      if (mine !== undefined) {
        this.log.error({ proposal: p.id, step, err: mine }, 'commit step failed on the coordinator')
        failed.set(this.init.nodeId, `${step}: ${mine}`)
      }
      theirs.forEach((err, i) => {
        const m = live[i] as Member
        if (err !== undefined) {
          this.log.warn(
            { proposal: p.id, step, node: m.nodeId, err },
            'commit step failed on a member',
          )
          failed.set(m.nodeId, `${step}: ${err}`)
        }
      })
      if (step === 'publish' && this.init.crashAt === 'some-commits')
        await this.crash('some-commits')
    }
    if (failed.size === 0) await cs.markCompleted(this.init.local.db, p.id)
    return failed
  }

  /**
   * For a table joining with striped sequences: the highest value each column's sequence
   * handed out on any member, read behind the fence. Undefined when there is nothing to
   * stripe, or when a member did not answer: then no node stripes in this step (floors
   * without that member's values could collide with them) and each node's striper does it
   * once every member answers.
   */
  private async floors(
    p: cs.Proposal,
    members: readonly Member[],
  ): Promise<Record<string, string> | undefined> {
    if (p.op !== 'add' || !this.init.steps.striping) return undefined
    const rel = { schema: p.schema, table: p.table }
    const answers = await Promise.all([
      this.init.steps.used([rel]).catch(() => undefined),
      ...members.map(async (m) => {
        const r = await this.call(m, 'sequences.used', { tables: [rel] }, PREPARE_TIMEOUT_MS)
        return r.ok && Array.isArray(r.result) ? (r.result as UsedValue[]) : undefined
      }),
    ])
    const all = answers.filter((a): a is UsedValue[] => a !== undefined)
    if (all.length < answers.length) {
      this.log.warn({ proposal: p.id }, 'a member did not tell its sequences: striping later')
      return undefined
    }
    return floorsOf(all)
  }

  /** Test-only: die the way a crashed coordinator does (no clean-up, no goodbye). */
  private async crash(point: CrashPoint, afterMs = 0): Promise<void> {
    if (afterMs > 0) await new Promise((r) => setTimeout(r, afterMs))
    this.log.fatal({ point }, 'test hook: killing this arbiter (testing.crashAt)')
    process.kill(process.pid, 'SIGKILL')
  }

  /** Every member that is part of the cluster (not removed). */
  participants(): Member[] {
    // a node still joining is not asked: it adopts the outcome when it becomes ready (and a
    // node that never could join — its tables differ — must not block the cluster)
    return this.init.membership
      .members()
      .filter((m) => m.joinState === 'ready' && !this.init.isRemoved(m.nodeId))
  }

  private async prepareOn(m: Member, p: cs.Proposal): Promise<NodeVerdict> {
    const r = await this.call(
      m,
      'proposal.prepare',
      { proposal: p },
      this.init.prepareTimeoutMs ?? PREPARE_TIMEOUT_MS,
    )
    if (!r.ok) return { node: m.nodeId, ack: false, reason: `node ${m.nodeId}: ${r.error.message}` }
    const v = r.result as { ack: boolean; reason?: string }
    return { node: m.nodeId, ack: v.ack === true, ...(v.reason ? { reason: v.reason } : {}) }
  }

  private async call(m: Member, method: string, params: unknown, timeoutMs: number) {
    return await this.init.mesh.request(m.peerId, { method, params }, { timeoutMs })
  }
}

function unusable(m: Member): string {
  if (m.duplicate) return `node ${m.nodeId} is claimed by two arbiters`
  if (m.state !== 'alive')
    return `node ${m.nodeId} is ${m.state} (last heard ${Math.round((Date.now() - m.lastHeardMs) / 100) / 10} s ago)`
  if (!m.postgresUp) return `node ${m.nodeId}: its arbiter cannot reach its PostgreSQL`
  return `node ${m.nodeId} is still ${m.joinState}`
}
