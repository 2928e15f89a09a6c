// The conflict resolver's loop: every checkIntervalMs, observe (subscriptions, new log
// records) → decide (pure) → act (record, skip, enable) → confirm what really got applied.
// Each cycle ends in one verdict line; an error ends the cycle, never the loop.
import { nextBeat } from '../beat.js'
import type { ResolverStrategy } from '../config/types.js'
import type { Logger } from '../log.js'
import type { HistoryEntry } from '../postgres/history.js'
import type { LocalNode } from '../postgres/local.js'
import type { ServerLogReader } from '../postgres/logfile.js'
import { isTransient, type LogRecord } from '../postgres/logparse.js'
import { parseMissingRow } from '../postgres/missing-rows.js'
import {
  type Action,
  acted,
  decide,
  newDecideState,
  type SubscriptionView,
  settle,
  uncounted,
} from './decide.js'
import { type ApplyFailure, FailureIndex } from './failures.js'
import type { LwwEngine } from './lww-engine.js'

export interface ResolverInit {
  local: LocalNode
  /** the strategy for a failure's table ("schema.table" as logged; undefined: not named) */
  strategy: ResolverStrategy | ((relation: string | undefined) => ResolverStrategy)
  intervalMs: number
  log: Logger
  /** resolver lww: the row-level engine that takes insert conflicts over */
  lww?: LwwEngine
  /** told about every issue recorded and every resolution confirmed (metrics, gossip) */
  onEvent?: (event: ResolverEvent) => void
}

export type ResolverEvent =
  | { kind: 'action'; action: Action }
  | { kind: 'resolved'; entry: HistoryEntry }
  /** an apply worker skipped an UPDATE/DELETE of a row missing here: the table may differ */
  | { kind: 'missing'; relation: string }

/** how soon to look again after a cycle that acted */
const CONFIRM_AFTER_MS = 150
/**
 * after re-enabling a subscription an apply worker's deadlock disabled, cycles run this often
 * for HOT_MS: on hot rows apply workers deadlock every few seconds, and each
 * one's peer stream waits until the next cycle (p50 0.58 s on the 1 s beat, the soak's logs)
 */
export const HOT_EVERY_MS = 250
export const HOT_MS = 10_000
/** partitions are looked up again at most this often (a partition made since is named then) */
const ROOTS_EVERY_MS = 10_000
/** with every subscription enabled and no apply error counted, the log is read this often */
const LOG_EVERY_MS = 10_000

type State = { kind: 'stopped' } | { kind: 'running'; timer: NodeJS.Timeout | undefined }

export class Resolver {
  private readonly init: ResolverInit
  private readonly log: Logger
  private readonly reader: ServerLogReader
  private readonly failures = new FailureIndex()
  private readonly decisions = newDecideState()
  private state: State = { kind: 'stopped' }
  private cycle: Promise<string> | undefined
  lastVerdict = 'not run yet'
  private actedLastCycle = false
  /** until when cycles run every HOT_EVERY_MS (a deadlock was acted on lately) */
  private hotUntilMs = 0
  /** whether trktr.history holds entries not confirmed resolved (undefined: not known) */
  private open: boolean | undefined
  /** partitions' partitioned tables, as last read (partitionRoots) */
  private roots: { atMs: number; map: ReadonlyMap<string, string> } = {
    atMs: Number.NEGATIVE_INFINITY,
    map: new Map(),
  }
  /** when the server log was last read, and the apply error counts then */
  private logRead = { atMs: 0, errors: '' }

  constructor(init: ResolverInit) {
    this.init = init
    this.log = init.log.child({ component: 'resolver' })
    this.reader = init.local.logReader()
  }

  start(): void {
    if (this.state.kind === 'running') return
    this.state = { kind: 'running', timer: undefined }
    this.schedule(0)
  }

  async stop(): Promise<void> {
    if (this.state.kind === 'running') clearTimeout(this.state.timer)
    this.state = { kind: 'stopped' }
    await this.cycle?.catch(() => undefined)
  }

  /** Run one cycle now (or join the one running); returns its verdict. */
  async tick(): Promise<string> {
    this.cycle ??= this.runCycle().finally(() => {
      this.cycle = undefined
    })
    return await this.cycle
  }

  private schedule(ms: number): void {
    if (this.state.kind !== 'running') return
    const state = this.state
    state.timer = setTimeout(() => {
      void this.tick().finally(() => {
        // after acting, look again soon: the skip's confirmation (or the next conflict of the
        // same outage) should not wait a whole interval
        const next = nextCycleInMs({
          now: Date.now(),
          acted: this.actedLastCycle,
          hotUntilMs: this.hotUntilMs,
          intervalMs: this.init.intervalMs,
        })
        if (this.state === state) this.schedule(next)
      })
    }, ms)
  }

  private async runCycle(): Promise<string> {
    let verdict: string
    try {
      verdict = await this.observeDecideAct()
    } catch (err) {
      // the next cycle reads the log, whatever else it sees: a server that restarted logs to a
      // new file, and the reader finishes only the file it read last — a second restart before
      // it read the first's file lost an apply worker's failure there (CI: a deadlock that
      // disabled a subscription 60 ms before the second restart; disabled for good)
      this.logRead = { atMs: Number.NEGATIVE_INFINITY, errors: '' }
      verdict = `cycle failed: ${(err as Error).message}`
      if (verdict !== this.lastVerdict) this.log.warn({ verdict }, 'resolver cycle')
      this.lastVerdict = verdict
      return verdict
    }
    // every action and every confirmed resolution has its own line (act, markApplied); a
    // subscription left disabled is said once each time the reason changes
    if (verdict.startsWith('no action') && verdict !== this.lastVerdict)
      this.log.info({ verdict }, 'resolver cycle')
    else this.log.debug({ verdict }, 'resolver cycle')
    this.lastVerdict = verdict
    return verdict
  }

  private async observeDecideAct(): Promise<string> {
    const { local } = this.init
    if (!(await local.initialized())) return 'no action: node not initialised'
    const list = await local.subscriptions()
    const records = this.logDue(list) ? await this.reader.poll() : []
    const roots = await this.partitionRoots(records)
    this.failures.add(
      records,
      list.map((s) => s.name),
      roots,
    )
    if (this.init.lww) await this.recordMissing(records, roots)
    const now = Date.now()
    const latest = (s: SubscriptionView) => this.failures.latestFor(s.name, s.oid)
    settle(list, latest, this.decisions)
    const actions = decide(list, latest, this.decisions, this.init.strategy, now)
    const notCounted = uncounted(list, latest, this.decisions)
    for (const a of actions) {
      await this.act(a)
      acted(this.decisions, a, now)
      this.init.onEvent?.({ kind: 'action', action: a })
    }
    // entries only this loop records: with none open, nothing to confirm (one query a second)
    const resolved = this.open !== false ? await local.records.markApplied() : []
    if (this.open === undefined || resolved.length > 0)
      this.open = (await local.records.historyCounts()).pending > 0
    for (const entry of resolved) {
      this.log.info(
        { subscription: entry.subscription, lsn: entry.lsn, relation: entry.relation },
        'conflict resolved',
      )
      this.init.onEvent?.({ kind: 'resolved', entry })
    }
    local.retryDueRefreshes()
    await local.syncWatches()
    const disabled = list.filter((s) => !s.enabled).length
    this.actedLastCycle = actions.length > 0
    if (actions.some((a) => isTransient(a.failure.sqlState))) this.hotUntilMs = now + HOT_MS
    if (actions.length === 0 && resolved.length === 0) {
      if (disabled === 0) return 'no failed subscriptions'
      // a failure in the log that the server's apply error count does not confirm: text
      // someone else made the server log, or a count the worker has not flushed yet
      if (notCounted.length > 0) {
        return `no action: ${disabled} disabled, a logged failure not counted by the server (${notCounted.join(', ')})`
      }
      return `no action: ${disabled} disabled, no new failure (${list
        .filter((s) => !s.enabled)
        .map((s) => this.why(s, latest(s)))
        .join('; ')})`
    }
    const parts = actions.map((a) => `${a.kind} ${a.subscription} (${a.failure.sqlState})`)
    if (resolved.length > 0) parts.push(`${resolved.length} confirmed resolved`)
    return parts.join('; ')
  }

  /** Why a disabled subscription is left as it is: its latest failure and its error counts. */
  private why(s: SubscriptionView, f: ApplyFailure | undefined): string {
    const c = this.decisions.counted.get(s.name)
    const failure = f === undefined ? 'no failure logged' : `failure ${f.id} handled`
    return `${s.name}: ${failure}, apply errors ${s.applyErrors} (${c?.applyErrors ?? 'none'} when last acted)`
  }

  /**
   * Whether to read the server log this cycle. Every apply error disables its subscription
   * (disable_on_error) and counts in its stats, so while every subscription is enabled and no
   * count moved there is no failure to read about: the log is read then every LOG_EVERY_MS
   * (what it holds stays there; the reader goes on from its offset). Always while apply workers
   * report skipped rows there (lww, recordMissingRows).
   */
  private logDue(list: readonly SubscriptionView[]): boolean {
    const now = Date.now()
    // a server restarted since (it logs to a new file: read it before a second restart could
    // start another), or a count moved
    const errors = list
      .map((s) => `${s.oid}:${s.applyErrors}:${s.statsReset}:${s.serverStart}`)
      .join(',')
    const due =
      list.some((s) => !s.enabled) ||
      errors !== this.logRead.errors ||
      now - this.logRead.atMs >= LOG_EVERY_MS ||
      (this.init.lww !== undefined && this.init.local.lwwTriggers.reportsMissingRows)
    if (due) this.logRead = { atMs: now, errors }
    return due
  }

  /**
   * Each partition's partitioned table, read again at most every ROOTS_EVERY_MS and only when
   * a record may name a table: apply workers name the partition they write into.
   */
  private async partitionRoots(
    records: readonly LogRecord[],
  ): Promise<ReadonlyMap<string, string> | undefined> {
    if (!records.some((r) => r.context !== undefined)) return undefined
    if (Date.now() - this.roots.atMs >= ROOTS_EVERY_MS) {
      try {
        this.roots = { atMs: Date.now(), map: await this.init.local.rowLevel.partitionRoots() }
      } catch (err) {
        // never fail the cycle here: the records are read already, and a failure they hold
        // would be lost with them (its subscription left disabled); the last map will do
        this.log.warn(
          { err: (err as Error).message },
          'cannot read partitions: using the last list',
        )
      }
    }
    return this.roots.map
  }

  /** UPDATEs and DELETEs the apply workers skipped for want of the row: in the ledger. */
  private async recordMissing(
    records: readonly LogRecord[],
    roots: ReadonlyMap<string, string> | undefined,
  ): Promise<void> {
    const missing = records
      .map(parseMissingRow)
      .filter((m) => m !== undefined)
      .map((m) => ({ ...m, relation: roots?.get(m.relation) ?? m.relation }))
    if (missing.length === 0) return
    const added = await this.init.local.rowLevel.recordMissingRows(missing)
    if (added === 0) return
    for (const relation of new Set(missing.map((m) => m.relation))) {
      const of = missing.filter((m) => m.relation === relation)
      this.log.warn(
        { relation, rows: of.length, kinds: [...new Set(of.map((m) => m.kind))] },
        'an apply worker skipped changes to rows missing here; checking the table',
      )
      this.init.onEvent?.({ kind: 'missing', relation })
    }
  }

  private async act(a: Action): Promise<void> {
    const { records, subscription } = this.init.local
    this.open = undefined // an entry may be recorded below
    const f = a.failure
    const base = {
      subscription: a.subscription,
      occurred: new Date(Date.parse(f.at) || Date.now()),
      sqlStateCode: f.sqlState,
      reason: f.detail ?? f.message,
      ...(f.relation === undefined ? {} : { relation: f.relation }),
      ...(f.key === undefined ? {} : { key: f.key, value: f.value ?? '' }),
    }
    switch (a.kind) {
      case 'skip': {
        await records.recordIssue({
          ...base,
          lsn: a.failure.finishLsn,
          kind: 'conflict',
          action: 'skip',
        })
        await subscription.skip(a.subscription, a.failure.finishLsn)
        await subscription.enable(a.subscription)
        this.log.warn(
          {
            subscription: a.subscription,
            lsn: a.failure.finishLsn,
            relation: f.relation,
            sqlState: f.sqlState,
          },
          'conflict: skipped the remote transaction (local write wins) and re-enabled',
        )
        return
      }
      case 'arm': {
        const armed = (await this.init.lww?.armFor(f.relation)) ?? []
        await subscription.enable(a.subscription)
        this.log.info(
          { subscription: a.subscription, relation: f.relation, armed },
          'insert conflict: row-level resolution armed, re-enabled (the whole transaction applies)',
        )
        return
      }
      case 'enable':
        await subscription.enable(a.subscription)
        this.log.info(
          { subscription: a.subscription, sqlState: f.sqlState },
          isTransient(f.sqlState)
            ? 'apply worker lost a deadlock or serialization failure to a local transaction: re-enabled (the transaction is applied again)'
            : 'publisher connection lost: re-enabled',
        )
        return
      case 'record':
        await records.recordIssue({
          ...base,
          lsn: f.finishLsn ?? '0/0',
          kind: isConflictState(f.sqlState) ? 'conflict' : 'error',
          action: 'none',
        })
        this.log.error(
          { subscription: a.subscription, sqlState: f.sqlState, reason: base.reason },
          'apply error recorded; left for the operator',
        )
    }
  }
}

function isConflictState(s: string): boolean {
  return s.startsWith('23')
}

/**
 * When the next cycle runs: soon after one that acted (its effect confirmed), every
 * HOT_EVERY_MS while deadlocks come, otherwise on the beat of the arbiter's other loops (one
 * wake-up for all of them).
 */
export function nextCycleInMs(c: {
  now: number
  acted: boolean
  hotUntilMs: number
  intervalMs: number
}): number {
  if (c.acted) return Math.min(CONFIRM_AFTER_MS, c.intervalMs)
  const every = c.now < c.hotUntilMs ? Math.min(HOT_EVERY_MS, c.intervalMs) : c.intervalMs
  return nextBeat(c.now, every, true) - c.now
}
