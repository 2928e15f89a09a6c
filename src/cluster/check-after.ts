// A table's check once its row-level conflicts have quieted down (issue 10: when the nodes do
// not hold the same rows, the system says so). Row-level resolution is proven by tests, not
// by every node's rows: a key it missed would stay different until the background check (every
// 10 minutes by default) or an operator's. So the lww loop tells this class of every table it
// resolved conflicts on, once no key has been queued for a while, and the table is checked
// then — a difference shows in the log, health and metrics within seconds of the burst.
// Every node that resolved conflicts asks; the check is cluster-wide, so a node whose turn comes
// after a check that started once the burst was over (any member's: results are told to every
// member) leaves it at that. Turns are staggered by the node's rank among the members, and a
// table is checked this way at most once per `gapMs` per node (a later request waits its turn),
// so a table with a conflict every few seconds is not scanned continually. A check that could
// not see every member (one dead or frozen: the members' turns then leave the table to it) or
// that failed is made again by the node that made it, a few times, seconds apart.
// A check that finds differences is followed by a mend, where no member is away: the keys every
// node holds in different versions get the last writer's, the rule row-level resolution itself
// keeps. PostgreSQL 17's apply worker can miss a row that another session updates at that very
// moment and skip the UPDATE or DELETE without a word (its index lookup under a dirty snapshot;
// see pgsql-hackers, commitfest 5151): on hot rows, where that session is another apply worker
// or a resolution round, the node keeps an older version than the others (or a row the others
// deleted), and no trigger sees it. A key some node has no row for is decided by the nodes'
// tombstones (check-deletes.ts); one no tombstone speaks for is left to the operator (said in
// the log and health): a row lost around replication.
import type { Logger } from '../log.js'

/**
 * the first turn comes this long after the burst is said to be over (half a second without a
 * key queued, lww-engine.ts): the check itself waits for what is in flight (its sync points)
 */
export const AFTER_CONFLICTS_MS = 300
/**
 * each rank among the members waits this much longer (the first may have had no conflict to
 * resolve: the turn that comes is often the second's; a check of a big table may then be made
 * twice, at most once per AFTER_CONFLICTS_GAP_MS on each node)
 */
export const RANK_STAGGER_MS = 500
/** one such check per table per node in this long */
export const AFTER_CONFLICTS_GAP_MS = 60_000
/** a check that missed a member or failed is made again this much later (times the attempt) */
export const RETRY_AFTER_MS = 5000
/** ... at most this many times */
export const RETRIES = 3

export interface ChecksAfterConflictsInit {
  log: Logger
  /** check one table cluster-wide; its result is recorded on every member */
  check: (relation: string) => Promise<{ verdict: string; differing_rows: number }>
  /**
   * a check found differences: set the keys every node holds in different versions to the last
   * writer's (undefined: not done, a member is away); the check after it is recorded likewise
   */
  mend?: (relation: string) => Promise<Mended | undefined>
  /** when the last check of the table (any member's) started, in ms (undefined: none known) */
  lastCheckAtMs: (relation: string) => number | undefined
  /** how many members cannot take part in a check now (dead, frozen, not ready) */
  missing: () => number
  /** this node's place among the members taking part (0: first) */
  rank: () => number
  delayMs?: number
  gapMs?: number
}

export interface Mended {
  repaired_rows: number
  after: { verdict: string; differing_rows: number }
}

export class ChecksAfterConflicts {
  private readonly init: ChecksAfterConflictsInit
  private readonly log: Logger
  private readonly timers = new Map<string, NodeJS.Timeout>()
  /** when this node last ran such a check of each table */
  private readonly ranAtMs = new Map<string, number>()
  /** per table, the latest end of a burst asked about and not checked yet */
  private readonly since = new Map<string, number>()
  /** per table, how often its check was made again after one that missed a member or failed */
  private readonly retried = new Map<string, number>()
  private stopped = true

  constructor(init: ChecksAfterConflictsInit) {
    this.init = init
    this.log = init.log.child({ component: 'checker' })
  }

  /** Conflicts of `relation` were resolved here, the last at `quietSinceMs`: check it soon. */
  request(relation: string, quietSinceMs: number): void {
    if (this.stopped) return
    this.since.set(relation, Math.max(quietSinceMs, this.since.get(relation) ?? 0))
    if (this.timers.has(relation)) return
    const now = Date.now()
    const turn =
      now + (this.init.delayMs ?? AFTER_CONFLICTS_MS) + this.init.rank() * RANK_STAGGER_MS
    const allowed = (this.ranAtMs.get(relation) ?? Number.NEGATIVE_INFINITY) + this.gap
    this.at(relation, Math.max(turn, allowed) - now)
  }

  private at(relation: string, ms: number, again = false): void {
    const t = setTimeout(() => void this.run(relation, again), ms)
    t.unref()
    this.timers.set(relation, t)
  }

  start(): void {
    this.stopped = false
  }

  stop(): void {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  private get gap(): number {
    return this.init.gapMs ?? AFTER_CONFLICTS_GAP_MS
  }

  /** `again`: this node's own check made again (its last missed a member or failed) */
  private async run(relation: string, again = false): Promise<void> {
    this.timers.delete(relation)
    const since = this.since.get(relation) ?? 0
    this.since.delete(relation)
    if (this.stopped) return
    const last = this.init.lastCheckAtMs(relation)
    if (!again && last !== undefined && last >= since) {
      this.log.debug({ relation }, 'check after row-level conflicts: checked since')
      return
    }
    this.ranAtMs.set(relation, Date.now())
    try {
      const missing = this.init.missing()
      let a = await this.init.check(relation)
      if (a.verdict === 'differs' && missing === 0) a = await this.mend(relation, a)
      const line = { relation, verdict: a.verdict, differing: a.differing_rows, missing }
      if (a.verdict === 'differs')
        this.log.error(line, 'check after row-level conflicts: data differs')
      else if (a.verdict === 'failed' || missing > 0)
        this.log.warn(line, 'check after row-level conflicts: not every node seen')
      else this.log.info(line, 'check after row-level conflicts')
      const tried = this.retried.get(relation) ?? 0
      if ((missing === 0 && a.verdict !== 'failed') || tried >= RETRIES || this.stopped) {
        this.retried.delete(relation)
        return
      }
      // the members' turns left the table to this check: it is made again here
      this.retried.set(relation, tried + 1)
      if (!this.timers.has(relation)) this.at(relation, RETRY_AFTER_MS * (tried + 1), true)
    } catch (err) {
      this.log.warn(
        { relation, err: (err as Error).message },
        'check after row-level conflicts failed',
      )
    }
  }

  /** The mend after a check that found differences; what is left differing after it. */
  private async mend(
    relation: string,
    found: { verdict: string; differing_rows: number },
  ): Promise<{ verdict: string; differing_rows: number }> {
    try {
      const m = await this.init.mend?.(relation)
      if (!m) return found
      if (m.repaired_rows > 0)
        this.log.warn(
          {
            relation,
            differing: found.differing_rows,
            mended: m.repaired_rows,
            left: m.after.differing_rows,
          },
          "check after row-level conflicts: differing rows set to the last writer's (versions, or a DELETE per the tombstones)",
        )
      return m.after
    } catch (err) {
      this.log.warn(
        { relation, err: (err as Error).message },
        'check after row-level conflicts: mend failed',
      )
      return found
    }
  }
}
