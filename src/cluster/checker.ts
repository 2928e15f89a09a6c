// The consistency check and repair, coordinated from the node that got the call (or, in the
// background, from the lowest live nodeId): it asks every member for bucket hashes, narrows the
// differing buckets to keys, re-reads those keys after a sync point until the differences are
// settled, and reports; a repair writes each settled key's winning version on the nodes that
// differ. The decisions are in check.ts (pure); this file observes and acts. Every result is
// told to every member, whose health and metrics then say what the last check found.
import { randomUUID } from 'node:crypto'
import { ConflictError } from '../errors.js'
import type { Logger } from '../log.js'
import { verdictOf } from './check.js'
import { ChecksAfterConflicts } from './check-after.js'
import { CheckCalls, type CheckPort, sleep } from './check-calls.js'
import { withTombstones } from './check-deletes.js'
import { failedObservation, MAX_KEYS_LISTED, MAX_ROUNDS, narrowAndSettle } from './check-narrow.js'
import { applyRepair, MEND_RULE } from './check-repair.js'

export { MAX_KEYS_LISTED, MAX_ROUNDS }

import type {
  CheckAnswer,
  CheckRecord,
  Observed,
  Options,
  RepairAnswer,
  TableReport,
} from './check-types.js'

export type { CheckPort } from './check-calls.js'
export { PACE_FACTOR } from './check-calls.js'
export type { CheckAnswer, CheckRecord, RepairAnswer, TableReport } from './check-types.js'

/** check → repair passes while keys are left (a truncated narrowing, rows that moved) */
export const MAX_REPAIR_PASSES = 3
const STOP_WAIT_MS = 2000

export interface CheckerInit {
  nodeId: number
  port: CheckPort
  log: Logger
  /** background check period; 0 = off */
  everyMs: number
  syncTimeoutMs?: number
  statementTimeoutMs?: number
  /** the mend after row-level conflicts set so many rows of a table (metrics) */
  onMended?: (relation: string, rows: number) => void
}

type State =
  | { kind: 'stopped' }
  | {
      kind: 'running'
      timer: NodeJS.Timeout | undefined
      prune: NodeJS.Timeout
      /** tables to check soon (checkSoon), one timer each */
      soon: Map<string, NodeJS.Timeout>
    }

/** a table some apply worker skipped rows of is checked this long after the last such news */
export const CHECK_SOON_MS = 2000

export class Checker {
  private readonly init: CheckerInit
  private readonly log: Logger
  private state: State = { kind: 'stopped' }
  private readonly records = new Map<string, CheckRecord>()
  private tablesKnown: Set<string> | undefined
  private running: Promise<unknown> | undefined
  private stopping = new AbortController()
  private lastAtMs: number | undefined
  private readonly calls: CheckCalls // the calls to the members
  private readonly after: ChecksAfterConflicts // a check once conflicts quieted

  constructor(init: CheckerInit) {
    this.init = init
    this.log = init.log.child({ component: 'checker' })
    this.calls = new CheckCalls({
      port: init.port,
      log: this.log,
      stopping: () => this.stopping.signal,
      syncTimeoutMs: init.syncTimeoutMs,
      statementTimeoutMs: init.statementTimeoutMs,
    })
    this.after = new ChecksAfterConflicts({
      log: init.log,
      check: (relation) => this.check(relation),
      mend: (relation) => this.mend(relation),
      lastCheckAtMs: (relation) => this.records.get(relation)?.atMs,
      missing: () => init.port.participants().missing.length,
      rank: () =>
        Math.max(0, [...init.port.participants().nodes].sort((a, b) => a - b).indexOf(init.nodeId)),
    })
  }

  start(): void {
    if (this.state.kind === 'running') return
    this.stopping = new AbortController()
    this.after.start()
    const timer =
      this.init.everyMs > 0
        ? setInterval(() => void this.background(), this.init.everyMs)
        : undefined
    timer?.unref()
    // a table taken out of the replicaset takes its check result with it
    const prune = setInterval(() => void this.refreshTables(), 5000)
    prune.unref()
    this.state = { kind: 'running', timer, prune, soon: new Map() }
  }

  async stop(): Promise<void> {
    if (this.state.kind === 'running') {
      if (this.state.timer) clearInterval(this.state.timer)
      clearInterval(this.state.prune)
      for (const t of this.state.soon.values()) clearTimeout(t)
    }
    this.state = { kind: 'stopped' }
    this.after.stop()
    this.stopping.abort()
    // a scan in progress is not waited for long: its answers are no longer wanted, and the
    // pools it uses close after this
    const running = this.running?.catch(() => undefined)
    if (running) await Promise.race([running, sleep(STOP_WAIT_MS, new AbortController().signal)])
  }

  /**
   * An apply worker here skipped an UPDATE or DELETE of a row it did not have, the resolver
   * skipped a remote transaction, the table was truncated here while other nodes may have
   * written to it, or a conflict on a unique index besides its key was resolved here (a change
   * to the row moved out of the way may have been skipped): the table may now differ between
   * nodes. Check it soon (once for news arriving together), so a difference
   * shows in the log, health and metrics instead of waiting for the background check.
   */
  checkSoon(relation: string): void {
    if (this.state.kind !== 'running') return
    const { soon } = this.state
    clearTimeout(soon.get(relation))
    const t = setTimeout(() => {
      soon.delete(relation)
      this.check(relation).then(
        (a) => {
          const line = { relation, verdict: a.verdict, differing: a.differing_rows }
          if (a.verdict === 'differs')
            this.log.error(line, 'check after possibly skipped changes: data differs')
          else this.log.info(line, 'check after possibly skipped changes')
        },
        (err: Error) =>
          this.log.warn(
            { relation, err: err.message },
            'check after possibly skipped changes failed',
          ),
      )
    }, CHECK_SOON_MS)
    t.unref()
    soon.set(relation, t)
  }

  /** Check one table, or every replicated table. */
  async check(relation?: string): Promise<CheckAnswer> {
    const started = Date.now()
    const tables = relation === undefined ? await this.init.port.tables() : [relation]
    if (relation !== undefined) await this.requireReplicated(relation)
    const reports: TableReport[] = []
    for (const t of tables) reports.push((await this.observe(t, {})).report)
    return this.answer(reports, started)
  }

  /**
   * Set each settled differing key to its winning version on every node that differs. `held`:
   * only the keys every member holds a row for (the mend after row-level conflicts, below).
   */
  async repair(relation: string, from?: number, held = false): Promise<RepairAnswer> {
    const started = Date.now()
    await this.requireReplicated(relation)
    const { nodes } = this.init.port.participants()
    if (from !== undefined && !nodes.includes(from)) {
      throw new ConflictError(
        `node ${from} cannot be the source: it is not a ready, reachable member (members taking part: ${nodes.join(', ')})`,
        'ERR_REPAIR_SOURCE',
      )
    }
    const rule = held ? MEND_RULE : from === undefined ? 'last writer' : `from node ${from}`
    let before: TableReport | undefined
    let repairedRows = 0
    let writes = 0
    const changed: unknown[] = []
    const failed: RepairAnswer['failed'] = []
    let passes = 0
    for (; passes < MAX_REPAIR_PASSES; ) {
      const seen = await this.observe(relation, { held, ...(from === undefined ? {} : { from }) })
      before ??= seen.report
      if (seen.report.verdict === 'failed') {
        throw new ConflictError(
          `cannot check ${relation}: ${seen.report.notes.join('; ')}`,
          'ERR_CHECK_FAILED',
        )
      }
      if (seen.confirmed.size === 0) break
      if (from === undefined && !seen.commitTs) {
        throw new ConflictError(
          `track_commit_timestamp is off on some node, so the last writer is unknown: turn it on, or name the source node (from)`,
          'ERR_NO_COMMIT_TIMESTAMPS',
        )
      }
      passes++
      const r = await applyRepair(
        { calls: this.calls, port: this.init.port, nodeId: this.init.nodeId },
        relation,
        seen,
        from,
        rule,
      )
      repairedRows += r.repaired
      writes += r.writes
      changed.splice(0, changed.length, ...r.changed)
      failed.splice(0, failed.length, ...r.failed)
      if (!seen.report.partial && r.changed.length === 0) break
    }
    const after = (await this.observe(relation, {})).report
    const answer: RepairAnswer = {
      node: this.init.nodeId,
      relation,
      rule,
      ...(from === undefined ? {} : { from }),
      repaired_rows: repairedRows,
      writes,
      changed,
      failed,
      passes,
      duration_ms: Date.now() - started,
      before: before ?? after,
      after,
    }
    this.log.info(
      {
        relation,
        rule,
        repaired: repairedRows,
        writes,
        changed: changed.length,
        failed: failed.length,
        after: after.verdict,
      },
      'repair done',
    )
    return answer
  }

  /** The mend after row-level conflicts (check-after.ts): undefined while a member is away. */
  async mend(relation: string): Promise<RepairAnswer | undefined> {
    if (this.init.port.participants().missing.length > 0) return undefined
    const r = await this.repair(relation, undefined, true)
    if (r.repaired_rows > 0) this.init.onMended?.(relation, r.repaired_rows)
    return r
  }

  /** A member's (or our own) check result: the health reason and metrics follow it. */
  record(r: CheckRecord): void {
    const prev = this.records.get(r.relation)
    if (prev && prev.atMs > r.atMs) return
    this.records.set(r.relation, r)
    this.lastAtMs = Math.max(this.lastAtMs ?? 0, r.atMs + r.durationMs)
  }

  /** Conflicts of a table were resolved here (the last at `quietSinceMs`): check it soon. */
  checkAfterConflicts(relation: string, quietSinceMs: number): void {
    if (this.state.kind === 'running') this.after.request(relation, quietSinceMs)
  }

  /** Divergence the last check of a table found, until a later check finds none. */
  healthReasons(): string[] {
    const out: string[] = []
    for (const r of this.records.values()) {
      if (r.differing === 0) continue
      if (this.tablesKnown && !this.tablesKnown.has(r.relation)) continue
      // worded from the coordinator's side, so that every member says it in the same words
      out.push(
        `node ${r.coordinator}'s check at ${new Date(r.atMs).toISOString()} found ${r.differing} row${r.differing === 1 ? '' : 's'} of ${r.relation} differing between the nodes; repair with traktor ctl check ${r.relation} --repair`,
      )
    }
    return out
  }

  /** For metrics: when a check last finished, and per table what it found. */
  metrics(): { lastAtSeconds: number | undefined; tables: CheckRecord[] } {
    const tables = [...this.records.values()].filter(
      (r) => !this.tablesKnown || this.tablesKnown.has(r.relation),
    )
    return {
      lastAtSeconds: this.lastAtMs === undefined ? undefined : this.lastAtMs / 1000,
      tables,
    }
  }

  private async refreshTables(): Promise<void> {
    try {
      this.tablesKnown = new Set(await this.init.port.tables())
    } catch {
      // keep the last list; the next refresh tries again
    }
  }

  private async requireReplicated(relation: string): Promise<void> {
    const tables = await this.init.port.tables()
    this.tablesKnown = new Set(tables)
    if (!tables.includes(relation)) {
      throw new ConflictError(
        `${relation} is not in the replicaset (GET /v1/cluster/replicaset lists it)`,
        'ERR_NOT_REPLICATED',
      )
    }
  }

  private answer(reports: TableReport[], started: number): CheckAnswer {
    const differing = reports.reduce((a, r) => a + r.differing_rows, 0)
    const unsettled = reports.reduce((a, r) => a + r.unsettled_rows, 0)
    return {
      node: this.init.nodeId,
      verdict: reports.some((r) => r.verdict === 'failed')
        ? 'failed'
        : verdictOf(differing, unsettled),
      differing_rows: differing,
      duration_ms: Date.now() - started,
      checked_at: new Date(started).toISOString(),
      tables: reports,
    }
  }

  /** Every ready member's check of all tables, paced; only on the lowest live nodeId. */
  private async background(): Promise<void> {
    if (this.running || !this.init.port.isLeader()) return
    const run = (async () => {
      const started = Date.now()
      const tables = await this.init.port.tables()
      this.tablesKnown = new Set(tables)
      const reports: TableReport[] = []
      for (const t of tables) {
        if (this.stopping.signal.aborted) return
        reports.push((await this.observe(t, { pace: true })).report)
      }
      const a = this.answer(reports, started)
      const line = {
        tables: tables.length,
        verdict: a.verdict,
        differing: a.differing_rows,
        ms: a.duration_ms,
      }
      if (a.verdict === 'differs') this.log.error(line, 'background check: data differs')
      else this.log.info(line, 'background check done')
    })()
    this.running = run
    try {
      await run
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'background check failed')
    } finally {
      this.running = undefined
    }
  }

  /** Check one table: narrow, list, settle; report to every member. */
  private async observe(relation: string, opts: Options): Promise<Observed> {
    const started = Date.now()
    const checkId = randomUUID()
    const taking = this.init.port.participants()
    const missing = taking.missing
    const nodes = [...taking.nodes].sort((a, b) => a - b)
    const notes = missing.map((m) => `node ${m.node} did not take part: ${m.why}`)
    const base = {
      relation,
      coordinator: this.init.nodeId,
      check_id: checkId,
      checked_at: new Date(started).toISOString(),
    }
    let observed: Observed
    try {
      observed = await narrowAndSettle(this.calls, { relation, nodes, notes, opts, base, started })
      // keys some nodes lack: a DELETE not applied everywhere, or a row written after one
      observed = await withTombstones(this.calls, relation, observed, opts.held === true, opts.from)
    } catch (err) {
      this.log.warn({ relation, err: (err as Error).message }, 'check failed')
      observed = failedObservation(base, nodes, [...notes, (err as Error).message], started)
    }
    if (observed.report.verdict !== 'failed') await this.tell(observed.report)
    return observed
  }

  /** Keep the result here and tell every member (their health and metrics follow it). */
  private async tell(r: TableReport): Promise<void> {
    const rec: CheckRecord = {
      relation: r.relation,
      verdict: r.verdict,
      differing: r.differing_rows,
      unsettled: r.unsettled_rows,
      atMs: Date.parse(r.checked_at),
      durationMs: r.duration_ms,
      coordinator: r.coordinator,
    }
    this.record(rec)
    await this.init.port.broadcast('check.report', rec).catch(() => undefined)
  }
}
