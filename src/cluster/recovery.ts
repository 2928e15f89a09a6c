// Recovery of two-phase changes (DESIGN §5, step 4). A coordinator that restarts re-drives
// its decided proposals and aborts its undecided ones. A member holding an undecided
// proposal past its timeout asks the coordinator, then everyone: a COMMIT anywhere → commit;
// an ABORT, "never prepared", or a coordinator without a decision (it records ABORT first,
// fencing out a late COMMIT) → abort; everyone prepared and the coordinator unreachable →
// stay blocked and say so (in-doubt).
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import type { LocalNode } from '../postgres/local.js'
import type { Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import type { Proposals } from './proposals.js'
import { answerOf } from './rpc-results.js'
import type { Steps } from './steps.js'

const TICK_MS = 1000
/** with nothing due and nothing proposed since, the proposals are looked at this often */
const IDLE_LOOK_MS = 5000
/** an undecided proposal older than this is in doubt */
export const PREPARED_TIMEOUT_MS = 10_000
const REDRIVE_AFTER_MS = 3000
/** a commit whose steps keep failing is retried after 1 s, doubling up to a minute */
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 60_000

/** A decided COMMIT whose steps have not finished on every node: visible in status and metrics. */
export interface StuckCommit {
  id: string
  op: 'add' | 'remove' | 'ddl'
  relation: string
  version: number
  attempts: number
  since: number
  nextMs: number
  /** the failing nodes with their reasons */
  failures: Array<{ node: number; reason: string }>
}

export interface RecoveryInit {
  local: LocalNode
  mesh: MeshPort
  membership: Membership
  proposals: Proposals
  steps: Steps
  nodeId: number
  log: Logger
  /** the replicaset's version moved here (a change committed by this pass) */
  onApplied?: () => void
  /**
   * a table joined the replicaset by a recovery path ("schema.table"): committed here from a
   * peer without its coordinator's copy, or re-driven after its fence was lowered for lasting
   * too long (rows written meanwhile stayed where they were written): check it soon
   */
  checkSoon?: (relation: string) => void
}

export type Status = { decision: 'commit' | 'abort' | 'pending' | 'unknown' }

/**
 * What a member does with a proposal it prepared that is still undecided past its timeout,
 * from what every reachable node answered (undefined: no answer): a COMMIT anywhere → commit;
 * an ABORT, or a node that never saw it (it records ABORT before answering, fencing out a
 * late COMMIT) → abort; only "pending" and silence → in doubt (wait, and say so). The
 * coordinator answers ABORT for an undecided proposal it is not driving any more.
 */
export function inDoubtOutcome(
  answers: ReadonlyArray<Status | undefined>,
): 'commit' | 'abort' | 'in doubt' {
  if (answers.some((a) => a?.decision === 'commit')) return 'commit'
  if (answers.some((a) => a?.decision === 'abort' || a?.decision === 'unknown')) return 'abort'
  return 'in doubt'
}

export class Recovery {
  private readonly init: RecoveryInit
  private readonly log: Logger
  private timer: Beat | undefined
  private busy = false
  /** the last pass's failure (logged when it changes: PostgreSQL down fails every pass) */
  private failing: string | undefined
  private startedMs = 0
  /** proposals prepared here whose outcome nobody reachable knows */
  readonly inDoubt = new Set<string>()
  /** schema changes decided ABORT whose prepared statement would not roll back: retry times */
  private readonly rollbacks = new Map<string, { n: number; nextMs: number }>()
  /** our decided COMMITs whose steps keep failing somewhere */
  private readonly stuck = new Map<string, StuckCommit>()
  /** a proposal may have changed here since the last look found nothing due (true at start) */
  private dirty = true
  private lastLookMs = 0

  constructor(init: RecoveryInit) {
    this.init = init
    this.log = init.log.child({ component: 'recovery' })
  }

  start(): void {
    this.startedMs = Date.now()
    this.timer ??= onBeat(TICK_MS, () => void this.tick())
  }

  stop(): void {
    this.timer?.stop()
    this.timer = undefined
  }

  /** A proposal was prepared, stepped or aborted here: look at the next tick. */
  kick(): void {
    this.dirty = true
  }

  /** What this node knows of a proposal; as its coordinator, decide ABORT for a stale one. */
  async statusFor(id: string): Promise<Status> {
    const p = await this.init.local.cluster.getProposal(id)
    if (!p) return { decision: 'unknown' }
    if (p.decision) return { decision: p.decision }
    const mine = p.coordinator === this.init.nodeId
    if (mine && !this.init.proposals.inFlight.has(id)) {
      this.kick() // its prepared statement, if any, is rolled back by the next pass
      return { decision: await this.init.local.cluster.decide(id, 'abort') }
    }
    return { decision: 'pending' }
  }

  private async tick(): Promise<void> {
    if (this.busy) return
    this.busy = true
    try {
      if (!(await this.init.local.initialized())) return
      await this.pass()
      if (this.failing !== undefined) this.log.info('recovery passes again')
      this.failing = undefined
    } catch (err) {
      const msg = (err as Error).message
      if (msg !== this.failing) this.log.warn({ err: msg }, 'recovery pass failed')
      this.failing = msg
    } finally {
      this.busy = false
    }
  }

  private async pass(): Promise<void> {
    const now = Date.now()
    await this.init.steps.sweep()
    // an idle node's pass is this one query (four lists a second, before), and only when a
    // proposal moved here since the last look found nothing, or every IDLE_LOOK_MS: every
    // write to the proposals goes through the steps (kick) or this class
    if (!this.dirty && now - this.lastLookMs < IDLE_LOOK_MS) return
    this.dirty = false
    this.lastLookMs = now
    if (!(await this.init.local.cluster.recoveryDue(this.init.nodeId))) {
      this.stuck.clear()
      this.rollbacks.clear()
      return
    }
    this.dirty = true // something is due: look again at the next tick
    // a schema change decided COMMIT (here, or learned from a peer) is committed here first,
    // whoever drives the rest: its prepared statement holds the tables' locks, and until it
    // commits this node's schema and version lag behind the members that did
    for (const p of await this.init.local.cluster.unappliedSchemaCommits()) {
      if (this.init.proposals.inFlight.has(p.id)) continue
      await this.init.local.cluster.applyProposal(p)
      this.init.onApplied?.()
      this.log.warn({ proposal: p.id }, 'committed a schema change decided before a restart')
    }
    // an ABORT this node recorded while answering a member, before this pass got to the
    // proposal, leaves its prepared statement holding the tables: roll it back
    // (a failing rollback is tried again after 1 s, doubling up to a minute)
    const held = await this.init.local.schemaChange.abortedButPrepared()
    for (const id of this.rollbacks.keys()) if (!held.includes(id)) this.rollbacks.delete(id)
    for (const id of held) {
      const tried = this.rollbacks.get(id)
      if (this.init.proposals.inFlight.has(id) || (tried && now < tried.nextMs)) continue
      if (await this.init.steps.abort(id)) {
        this.rollbacks.delete(id)
        this.log.warn({ proposal: id }, 'rolled back a schema change decided ABORT')
      } else {
        const n = (tried?.n ?? 0) + 1
        this.rollbacks.set(id, {
          n,
          nextMs: now + Math.min(RETRY_MIN_MS * 2 ** (n - 1), RETRY_MAX_MS),
        })
      }
    }
    for (const p of await this.init.local.cluster.openProposals()) {
      if (p.coordinator === this.init.nodeId) {
        if (this.init.proposals.inFlight.has(p.id)) continue
        // ours, undecided, and not running: we restarted mid-proposal → abort everywhere
        // (here too: a schema change we prepared is rolled back)
        await this.init.steps.abort(p.id)
        await this.broadcast('proposal.abort', { id: p.id })
        this.log.warn({ proposal: p.id }, 'aborted an undecided proposal after restart')
        continue
      }
      if (now - p.createdMs < PREPARED_TIMEOUT_MS) continue
      await this.resolveInDoubt(p)
    }
    // after a restart, once membership has had time to settle, and again every tick until
    // every member has run every step (a member may be away at the first try)
    if (now - this.startedMs > REDRIVE_AFTER_MS) await this.redrive()
  }

  /** Our decided COMMITs whose steps keep failing somewhere (status, health, metrics). */
  stuckCommits(): StuckCommit[] {
    return [...this.stuck.values()]
  }

  /**
   * Our own decided COMMITs not applied everywhere: drive them again, with a backoff per
   * proposal while they keep failing (a failing step must not raise the fence every second).
   */
  private async redrive(): Promise<void> {
    const now = Date.now()
    for (const p of await this.init.local.cluster.incompleteCommits(this.init.nodeId)) {
      // the coordinator may be driving it right now (a commit that just failed on a member)
      if (this.init.proposals.inFlight.has(p.id)) continue
      const known = this.stuck.get(p.id)
      if (known && now < known.nextMs) continue
      // re-driving fences the table on every node: only when everyone can take part — every
      // peer this node subscribes to among them too. Just after a restart the membership may
      // not have heard them all yet; a drive without one would end "done" with that peer's
      // subscription to this node never refreshed (the table's rows from here never reach it)
      const members = this.init.proposals.participants()
      if (members.some((m) => m.state !== 'alive' || m.duplicate)) return
      const subscribed = (await this.init.local.subscriptions()).map((s) => s.peer)
      if (this.init.proposals.notTakingPart(subscribed).length > 0) return
      const failed = await this.init.proposals.drive(p, members)
      this.noteDrive(p, failed, known)
    }
  }

  private noteDrive(p: cs.ProposalRow, failed: Map<number, string>, known?: StuckCommit): void {
    const relation = `${p.schema}.${p.table}`
    if (failed.size === 0) {
      this.stuck.delete(p.id)
      if (p.op === 'add') this.init.checkSoon?.(relation)
      this.log.info(
        { proposal: p.id, relation, attempts: (known?.attempts ?? 0) + 1 },
        're-drove a committed proposal: done on every node',
      )
      return
    }
    const failures = [...failed].map(([node, reason]) => ({ node, reason }))
    const attempts = (known?.attempts ?? 0) + 1
    const delay = Math.min(RETRY_MIN_MS * 2 ** (attempts - 1), RETRY_MAX_MS)
    const changed = JSON.stringify(failures) !== JSON.stringify(known?.failures)
    this.stuck.set(p.id, {
      id: p.id,
      op: p.op,
      relation,
      version: p.version,
      attempts,
      since: known?.since ?? Date.now(),
      nextMs: Date.now() + delay,
      failures,
    })
    // one line when the failure changes, then one every tenth attempt
    if (changed || attempts % 10 === 0) {
      this.log.error(
        { proposal: p.id, relation, op: p.op, attempts, retryInMs: delay, failures },
        'a committed change keeps failing; retrying with backoff',
      )
    }
  }

  private async resolveInDoubt(p: cs.ProposalRow): Promise<void> {
    const outcome = inDoubtOutcome([...(await this.askAll(p.id)).values()])
    if (outcome === 'in doubt') {
      if (!this.inDoubt.has(p.id))
        this.log.error(
          { proposal: p.id, coordinator: p.coordinator },
          'proposal in doubt: coordinator unreachable, everyone prepared',
        )
      this.inDoubt.add(p.id)
      return
    }
    this.inDoubt.delete(p.id)
    if (outcome === 'abort') {
      await this.init.steps.abort(p.id)
      this.log.warn({ proposal: p.id }, 'in-doubt proposal aborted')
    } else {
      await this.init.local.cluster.decide(p.id, 'commit')
      await this.init.local.cluster.applyProposal(p)
      this.init.onApplied?.()
      if (p.op === 'ddl') await this.init.steps.release(p.id)
      else await this.init.local.refreshAll().catch(() => undefined)
      this.log.warn({ proposal: p.id }, 'in-doubt proposal committed from a peer')
      if (p.op === 'add') this.init.checkSoon?.(`${p.schema}.${p.table}`)
    }
  }

  private async askAll(id: string): Promise<Map<number, Status | undefined>> {
    const out = new Map<number, Status | undefined>()
    const live = this.init.membership.members().filter((m) => m.state !== 'dead')
    const req = { method: 'proposal.status', params: { id } }
    for (const { member, r } of await fanOut(this.init.mesh, live, req, 2000)) {
      const a = answerOf('proposal.status', r)
      out.set(member.nodeId, a.ok ? a.result : undefined)
    }
    return out
  }

  private async broadcast(method: string, params: unknown): Promise<void> {
    const live = this.init.membership.members().filter((m) => m.state !== 'dead')
    await fanOut(this.init.mesh, live, { method, params }, 2000)
  }
}
