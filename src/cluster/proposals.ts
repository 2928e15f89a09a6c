// Two-phase replicaset changes (DESIGN §5). The node that receives the call coordinates:
// PREPARE to every member (each validates and records the proposal), then — only if all
// acknowledged before the deadline — the coordinator's local decision row (the commit point),
// then the change in steps on every node: fence (writers wait), publish, refresh, unfence.
// Any NACK or timeout → ABORT everywhere, nothing changed. Recovery lives in recovery.ts.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import type { DdlSpec } from '../postgres/ddl.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import type { UsedValue } from '../postgres/sequences.js'
import { copyPlan } from './copy-plan.js'
import { drainRefusals } from './ddl.js'
import { type FaultHooks, NO_FAULTS } from './faults.js'
import type { Member, Membership } from './membership.js'
import type { MeshPort } from './port.js'
import { answerOf } from './rpc-results.js'
import { gatherFloors } from './sequences.js'
import {
  COPY_FENCE_MAX_MS,
  DDL_LOCK_TIMEOUT_MS,
  DDL_STATEMENT_TIMEOUT_MS,
  type Steps,
} from './steps.js'
import { type NodeVerdict, unusable, verdictOf } from './verdicts.js'

export type { NodeVerdict }
export type Op = 'add' | 'remove' | 'ddl'
/**
 * the commit steps of a table joining or leaving the replicaset. Right after the prepare every
 * node's fence is up: no fence round then (a stripe or publish step raises a fence that fell
 * meanwhile); a re-drive after a crash raises them all first.
 */
export const TABLE_STEPS = ['fence', 'stripe', 'copy', 'publish', 'refresh', 'unfence'] as const
/** the commit steps of a schema change: its statement is already prepared on every node */
export const DDL_STEPS = ['commit-ddl', 'unfence'] as const
export const STEPS = [...TABLE_STEPS, ...DDL_STEPS] as const
export type Step = (typeof STEPS)[number]
export const stepsFor = (op: Op): readonly Step[] => (op === 'ddl' ? DDL_STEPS : TABLE_STEPS)

export interface Outcome {
  outcome: 'committed' | 'aborted' | 'unchanged'
  /** a table joined holding rows: whose the others copied, or why it needs a merge, merged */
  copied?: { from: number; rows?: number }
  merge?: string
  untold?: number[]
  merged?: { why: string } & ({ repaired_rows: number; verdict: string } | { error: string })
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
  /** a schema change: how long every member may take to apply every peer's changes */
  drainTimeoutMs?: number
  /** a member's local drain (check-node's sync): its peers applied everything it committed */
  drain?: (nodes: number[], timeoutMs: number) => Promise<DrainAnswer>
  onOutcome?: (o: Outcome) => void
  /** where a fault test acts (faults.ts); nothing by default */
  faults?: FaultHooks
}

const PREPARE_TIMEOUT_MS = 5000
const STEP_TIMEOUT_MS = 10_000
const DRAIN_TIMEOUT_MS = 5000
/** a member's answer to the schema change's prepare (the statement runs there) */
const DDL_PREPARE_TIMEOUT_MS = DDL_STATEMENT_TIMEOUT_MS + DDL_LOCK_TIMEOUT_MS + 5000

type Used = Promise<UsedValue[] | undefined>

export interface DrainAnswer {
  reached: boolean
  behind: Array<{ node: number; slot: string; confirmed: string | null; exists: boolean }>
}

export class Proposals {
  private readonly init: ProposalsInit
  private readonly log: Logger
  /** one change at a time from this coordinator */
  private queue: Promise<unknown> = Promise.resolve()
  /** proposals this coordinator is running now (recovery must not abort them) */
  readonly inFlight = new Set<string>()
  private readonly faults: FaultHooks

  constructor(init: ProposalsInit) {
    this.init = init
    this.log = init.log.child({ component: 'proposals' })
    this.faults = init.faults ?? NO_FAULTS
  }

  /** Propose a change cluster-wide; resolves with the outcome, never hangs. */
  propose(op: 'add' | 'remove', rel: RelationName): Promise<Outcome> {
    return this.enqueue(op, rel)
  }

  /**
   * Propose a schema change (ddl.ts): fenced and recorded everywhere, drained, then its
   * statement prepared on every node; committed only if every node prepared it.
   */
  proposeDdl(spec: DdlSpec, rel: RelationName): Promise<Outcome> {
    return this.enqueue('ddl', rel, spec)
  }

  private enqueue(op: Op, rel: RelationName, ddl?: DdlSpec): Promise<Outcome> {
    const run = this.queue.then(() => this.run(op, rel, ddl))
    this.queue = run.catch(() => undefined)
    return run
  }

  private async run(op: Op, rel: RelationName, ddl?: DdlSpec): Promise<Outcome> {
    const started = Date.now()
    const { local, nodeId } = this.init
    const relation = formatRelation(rel)
    // read at once: the call waits for them
    const [{ version, present }, described] = await Promise.all([
      op === 'ddl'
        ? local.cluster.versionBase().then((v) => ({ version: v, present: undefined }))
        : local.cluster.proposalBase(rel),
      op === 'ddl' ? undefined : local.tables.tableInfo(rel).catch((err: Error) => err),
    ])
    const done = (o: Omit<Outcome, 'durationMs' | 'op' | 'relation'>): Outcome => {
      const out = { ...o, op, relation, durationMs: Date.now() - started }
      this.init.onOutcome?.(out)
      return out
    }
    if ((op === 'add' && present) || (op === 'remove' && present === false)) {
      return done({ outcome: 'unchanged', version, nodes: [] })
    }
    if (described instanceof Error) throw described // not a table (after "unchanged")
    const members = this.participants()
    const blocked = members.filter((m) => m.state !== 'alive' || m.duplicate || !m.postgresUp)
    if (blocked.length > 0) {
      const nodes = blocked.map((m) => ({ node: m.nodeId, ack: false, reason: unusable(m) }))
      return done({ outcome: 'aborted', version, nodes, reason: 'not every member can take part' })
    }
    const proposal: cs.Proposal = {
      id: randomUUID(),
      version: version + 1,
      op,
      schema: rel.schema,
      table: rel.table,
      columns: described?.columns ?? [],
      coordinator: nodeId,
      ...(ddl ? { ddl } : {}),
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
    // phase 1: validate, fence and record here and on every member at once. A refusal anywhere
    // aborts everywhere; a member that prepared before this node recorded it (this node died
    // meanwhile) asks after its timeout, and a node that never saw it answers ABORT
    const mine = this.init.steps.prepare(proposal).catch((err: Error) => ({
      ack: false,
      reason: `node ${nodeId}: ${err.message}`,
    }))
    // what this node's sequences handed out, read behind its fence while the members answer
    const used = mine.then((v) => (v.ack ? this.used(proposal) : undefined))
    const pending = members.map((m) => this.prepareOn(m, proposal))
    await this.faults.at('prepare-sent')
    if (this.faults.armed('some-acks'))
      void Promise.race(pending).then(() => this.faults.at('some-acks'))
    const verdicts: NodeVerdict[] = [
      { node: nodeId, ...(await mine) },
      ...(await Promise.all(pending)),
    ]
    // a schema change votes twice: fenced and recorded (above), then, once every node has
    // applied every peer's changes to the fenced tables, its statement prepared everywhere
    if (op === 'ddl' && verdicts.every((v) => v.ack)) {
      verdicts.splice(0, verdicts.length, ...(await this.prepareDdl(proposal, members)))
    }
    // a table holding rows on some nodes: copied to the others, or merged (copy-plan.ts)
    const plan = op === 'add' && verdicts.every((v) => v.ack) ? copyPlan(relation, verdicts) : {}
    for (const v of verdicts) delete v.content
    if (!verdicts.every((v) => v.ack)) {
      // recorded (if it was not) and decided ABORT here, and our own fence lowered at once
      await this.init.steps.abort(proposal.id, proposal)
      await Promise.all(
        members.map((m) => this.call(m, 'proposal.abort', { id: proposal.id }, PREPARE_TIMEOUT_MS)),
      )
      this.log.info({ proposal: proposal.id, relation, op, verdicts }, 'proposal aborted')
      const why = op === 'ddl' ? verdicts.find((v) => !v.ack)?.reason : undefined
      const reason = why ?? 'a member refused'
      return done({ outcome: 'aborted', proposalId: proposal.id, version, nodes: verdicts, reason })
    }
    if (plan.copy) proposal.copy = plan.copy
    if (op === 'ddl') await this.faults.at('ddl-prepared')
    // the commit point: from here on the change is driven to the end
    const decision = await local.cluster.decide(proposal.id, 'commit', proposal)
    await this.faults.at('decision')
    if (decision !== 'commit') {
      await this.init.steps.abort(proposal.id)
      const reason = 'aborted by recovery'
      return done({ outcome: 'aborted', proposalId: proposal.id, version, nodes: verdicts, reason })
    }
    const ms: Record<string, number> = { prepare: Date.now() - started }
    const applied = await this.drive(proposal, members, ms, used)
    const nodes = verdicts.map((v) => ({
      ...v,
      applied: applied.get(v.node) === undefined,
      ...(applied.get(v.node) ? { reason: applied.get(v.node) } : {}),
    }))
    const took = { ms: Date.now() - started, steps: ms } // where the time went, step by step
    this.log.info(
      { proposal: proposal.id, relation, op, version: proposal.version, ...took },
      'proposal committed',
    )
    const { copy } = proposal
    const count = copy?.rows != null ? { rows: copy.rows } : {}
    return done({
      outcome: 'committed',
      proposalId: proposal.id,
      version: proposal.version,
      nodes,
      ...(copy ? { copied: { from: copy.node, ...count } } : {}),
      ...(plan.merge ? { merge: plan.merge } : {}),
      ...(plan.untold ? { untold: plan.untold } : {}),
    })
  }

  /**
   * Run the commit steps on this node and every member, each step everywhere before the next.
   * Returns the nodes that could not finish, with why (they catch up later).
   */
  async drive(
    p: cs.Proposal,
    members: readonly Member[],
    ms: Record<string, number> = {},
    prepared?: Used,
  ): Promise<Map<number, string>> {
    const failed = new Map<number, string>()
    for (const step of stepsFor(p.op)) {
      if (step === 'fence' && prepared) continue // every node fenced at prepare
      const began = Date.now()
      const live = members.filter((m) => !failed.has(m.nodeId))
      const commits = step === 'publish' || step === 'commit-ddl'
      if (commits && this.faults.armed('one-publish')) {
        // a true partial commit: one member has published, the others (and we) have not
        const [first] = live
        if (first) await this.call(first, 'proposal.step', { proposal: p, step }, STEP_TIMEOUT_MS)
        await this.faults.at('one-publish')
      }
      // the values every member's sequences handed out, read behind the fence
      const floors = step === 'stripe' ? await this.floors(p, live, prepared) : undefined
      if (step === 'stripe' && !floors) continue // no node stripes without floors: no round
      if (step === 'copy' && !p.copy) continue
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
            step === 'copy' ? COPY_FENCE_MAX_MS : (this.init.stepTimeoutMs ?? STEP_TIMEOUT_MS),
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
      if (commits) await this.faults.at('some-commits')
      ms[step] = Date.now() - began
    }
    if (failed.size === 0) await this.init.local.cluster.markCompleted(p.id)
    return failed
  }

  /** What this node's sequences of a joining table handed out (undefined: unknown, or none to stripe). */
  private used(p: cs.Proposal): Used {
    if (p.op !== 'add' || !this.init.steps.striping) return Promise.resolve(undefined)
    return this.init.steps.used([{ schema: p.schema, table: p.table }]).catch(() => undefined)
  }

  /** The floors of the stripe step (sequences.ts gatherFloors), undefined for no stripe step. */
  private async floors(p: cs.Proposal, members: readonly Member[], prepared?: Used) {
    if (p.op !== 'add' || !this.init.steps.striping) return undefined
    const tables = [{ schema: p.schema, table: p.table }]
    const f = await gatherFloors(prepared?.then((u) => u ?? this.used(p)) ?? this.used(p), () =>
      members.map(async (m) => {
        const r = await this.call(m, 'sequences.used', { tables }, PREPARE_TIMEOUT_MS)
        const a = answerOf('sequences.used', r)
        return a.ok ? a.result : undefined
      }),
    )
    if (f !== 'silent') return f
    this.log.warn({ proposal: p.id }, 'a member did not tell its sequences: striping later')
    return undefined
  }

  /**
   * The schema change's second round: drain (every member's peers applied everything it
   * committed, bounded), then every node runs and prepares the statement. One verdict per
   * node; a lagging node or a failing statement is a refusal with its reason.
   */
  private async prepareDdl(p: cs.Proposal, members: readonly Member[]): Promise<NodeVerdict[]> {
    const { nodeId } = this.init
    const nodes = [nodeId, ...members.map((m) => m.nodeId)]
    const drainMs = this.init.drainTimeoutMs ?? DRAIN_TIMEOUT_MS
    const drained = await Promise.all([
      (this.init.drain?.(nodes, drainMs) ?? Promise.resolve({ reached: true, behind: [] })).then(
        (a) => ({ node: nodeId, a }),
        (err: Error) => ({ node: nodeId, err: err.message }),
      ),
      ...members.map(async (m) => {
        const r = await this.call(m, 'check.sync', { nodes, timeoutMs: drainMs }, drainMs + 5000)
        const a = answerOf('check.sync', r)
        return a.ok ? { node: m.nodeId, a: a.result } : { node: m.nodeId, err: a.error }
      }),
    ])
    const lagging = drainRefusals(drained, drainMs)
    if (lagging.length > 0) return lagging
    await this.faults.at('ddl-drained')
    const pending = members.map(async (m) =>
      verdictOf(
        m.nodeId,
        answerOf(
          'proposal.ddl',
          await this.call(m, 'proposal.ddl', { id: p.id }, DDL_PREPARE_TIMEOUT_MS),
        ),
      ),
    )
    const own = await this.init.steps.prepareDdl(p)
    return [{ node: nodeId, ...own }, ...(await Promise.all(pending))]
  }

  /** Those of `peers` that are not participants now (not heard yet, or not ready), removed aside. */
  notTakingPart(peers: readonly number[]): number[] {
    const here = new Set(this.participants().map((m) => m.nodeId))
    return peers.filter((n) => !here.has(n) && !this.init.isRemoved(n))
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
    const timeout = this.init.prepareTimeoutMs ?? PREPARE_TIMEOUT_MS
    const r = await this.call(m, 'proposal.prepare', { proposal: p }, timeout)
    return verdictOf(m.nodeId, answerOf('proposal.prepare', r))
  }

  private async call(m: Member, method: string, params: unknown, timeoutMs: number) {
    return await this.init.mesh.request(m.peerId, { method, params }, { timeoutMs })
  }
}
