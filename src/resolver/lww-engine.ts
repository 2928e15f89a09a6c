// The row-level resolution loop (resolver "lww"; the SQL and the reasoning are in
// src/postgres/lww.ts). Woken at once when an apply worker queues a key into an empty queue
// (LISTEN), again right after a round that found keys (until it finds none), and by a timer,
// the fallback: every tick while not listening or while keys came in the last HOT_MS, every
// QUIET_TICKS-th tick otherwise. A cycle keeps the replica triggers on exactly the replicated
// tables, runs a resolution round when the queue holds anything, disarms insert branches that
// have been quiet, and reports what was resolved; once no key has come for CONFLICTS_QUIET_MS
// (a timer looks then, without a cycle) it asks for the check of the tables they were on. One
// verdict per cycle; an error ends the cycle, never the loop.
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type { HeldSession } from '../postgres/db.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import type { Listener, LocalNode } from '../postgres/local.js'
import * as lww from '../postgres/lww.js'
import { KEPT, TRUNCATED, UNIQUE_RESOLVED } from '../postgres/lww-schema.js'

/** an armed insert branch with no conflict for this long is switched off again */
export const DISARM_AFTER_MS = 30_000
/** triggers are compared with the replicaset this often (and before every refresh, and when armed) */
const ENSURE_EVERY_MS = 30_000
/**
 * a key queued beside one a round is deleting finds the queue not empty and notifies no one:
 * for this long after a round found keys, the timer runs a cycle every tick
 */
const HOT_MS = 10_000
/** otherwise, while the queue's notices wake the loop, the timer runs every so many ticks */
const QUIET_TICKS = 5
/**
 * resolutions are logged as one line at most this often: on hot rows a round runs many times a
 * second (each is in the ledger and the metrics; the soak's logs were 96 % lww lines)
 */
export const SUMMARY_EVERY_MS = 10_000
/**
 * conflicts are said to be quiet once no key has been queued here for this long: the tables
 * they were on are checked across the nodes then (check-after.ts), so a version an apply worker
 * skipped (PostgreSQL 17, commitfest 5151) is mended within about a second and a half of the
 * writers stopping, not ~12 s as with HOT_MS (issue 10: identical within 2 s of a storm's end)
 */
export const CONFLICTS_QUIET_MS = 500
/** a table in conflict this long without a quiet moment has its check asked for anyway */
export const LONG_BURST_MS = 300_000
/** cycles failing this long are a health reason: conflicting rows stay different meanwhile */
export const FAILING_REASON_MS = 5000

export interface LwwEngineInit {
  local: LocalNode
  log: Logger
  tickMs: number
  /** resolutions recorded since the last report (metrics) */
  onResolved?: (
    counts: Array<{ kind: string; relation: string; action: string; n: number }>,
  ) => void
  /**
   * a replicated table ("schema.table") may now differ between nodes: it was truncated here
   * (lww-local.ts), or a round resolved a conflict on one of its unique indexes besides the
   * key (lww-schema.ts, UNIQUE_RESOLVED)
   */
  checkSoon?: (relation: string) => void
  /**
   * an apply worker kept this node's value of a column stored out of line under another
   * origin's change of the table ("schema.table"): the row is compared with its writer's copy
   * (lww-schema.ts, KEPT; cluster/check-kept.ts)
   */
  keptSoon?: (relation: string) => void
  /**
   * conflicts of this replicated table ("schema.table") were resolved here, the last in the
   * round at `lastAtMs`, and no key has been queued for CONFLICTS_QUIET_MS since — or they
   * have gone on for LONG_BURST_MS, `lastAtMs` then when that stretch began: the table is
   * checked across the nodes (cluster/check-after.ts; a check started after `lastAtMs` counts)
   */
  conflictsQuiet?: (relation: string, lastAtMs: number) => void
}

type State = { kind: 'stopped' } | { kind: 'running'; timer: Beat }

export class LwwEngine {
  private readonly init: LwwEngineInit
  private readonly log: Logger
  private state: State = { kind: 'stopped' }
  private cycle: Promise<string> | undefined
  private ticks = 0
  /** a cycle ran on an initialised node (until then the timer runs one every tick) */
  private settled = false
  private ensuredMs = 0
  /** when a round last found keys queued (for HOT_MS after, the timer runs a cycle every tick) */
  private keysAtMs = Number.NEGATIVE_INFINITY
  /** looks, without a cycle, whether the tables' checks are due once the keys have been quiet */
  private quietTimer: NodeJS.Timeout | undefined
  private lastId = -1
  /** when each table's insert branch was last asked for, by "schema.table" */
  private readonly armed = new Map<string, { rel: RelationName; atMs: number }>()
  lastVerdict = 'not run yet'
  /** an apply worker queued a key: a cycle runs at once (the tick is the fallback) */
  private listener: Listener | undefined
  private listenFailed = false
  /** woken while a cycle ran: one more right after it */
  private again = false
  /** resolutions not logged yet */
  private readonly tally = new Tally(SUMMARY_EVERY_MS)
  /** tables with conflicts resolved since their check was last asked for */
  private readonly bursts = new Bursts()
  /** since when every cycle failed (undefined: the last one worked) */
  private failingSinceMs: number | undefined

  constructor(init: LwwEngineInit) {
    this.init = init
    this.log = init.log.child({ component: 'lww' })
  }

  private get store(): LocalNode['rowLevel'] {
    return this.init.local.rowLevel
  }

  start(): void {
    if (this.state.kind === 'running') return
    const timer = onBeat(
      this.init.tickMs,
      () => {
        const quiet = this.listener?.alive && this.settled && Date.now() >= this.keysAtMs + HOT_MS
        if (!quiet || ++this.ticks % QUIET_TICKS === 0) void this.tick()
      },
      { unref: true },
    )
    this.state = { kind: 'running', timer }
    void this.tick() // listening from the start, not one tick later
  }

  async stop(): Promise<void> {
    if (this.state.kind === 'running') this.state.timer.stop()
    clearTimeout(this.quietTimer)
    this.state = { kind: 'stopped' }
    await this.cycle?.catch(() => undefined)
    this.logResolutions(true)
    await this.listener?.close()
    this.listener = undefined
    this.held?.release()
    this.held = undefined
  }

  /** Run one cycle now (or join the one running); returns its verdict. None once stopped. */
  async tick(): Promise<string> {
    // a notice can arrive while stop() waits for the last cycle: a cycle started then would
    // take a session that nothing releases any more (the pool's end waited for it for ever)
    if (this.state.kind !== 'running') return 'no action: stopped'
    this.cycle ??= this.run().finally(() => {
      this.cycle = undefined
      if (this.again && this.state.kind === 'running') {
        this.again = false
        void this.tick()
      }
    })
    return await this.cycle
  }

  private wake(): void {
    if (this.cycle) this.again = true
    else void this.tick()
  }

  /** LISTEN for queued keys, again after the connection ended (a server restart). */
  private async listen(): Promise<void> {
    if (this.listener?.alive || this.state.kind !== 'running') return
    try {
      this.listener = await this.init.local.listenForConflicts((payload) => {
        if (payload.startsWith(TRUNCATED)) {
          const relation = payload.slice(TRUNCATED.length)
          this.log.info({ relation }, 'a replicated table was truncated here: checking it soon')
          this.init.checkSoon?.(relation)
        } else if (payload.startsWith(KEPT)) {
          this.init.keptSoon?.(payload.slice(KEPT.length))
        } else if (payload.startsWith(UNIQUE_RESOLVED)) {
          // a change to the displaced row may have been skipped here meanwhile
          this.init.checkSoon?.(payload.slice(UNIQUE_RESOLVED.length))
        } else this.wake()
      })
      if (this.state.kind !== 'running') await this.listener.close()
      if (this.listenFailed) this.log.info('listening for queued conflicts again')
      this.listenFailed = false
    } catch (err) {
      if (!this.listenFailed)
        this.log.warn(
          { err: (err as Error).message },
          'cannot listen for queued conflicts: polling',
        )
      this.listenFailed = true
    }
  }

  /**
   * Switch a table's insert branch on: an insert conflict (23505) stopped a subscription. The
   * resolver enables the subscription after this, and the transaction applies.
   */
  async arm(rel: RelationName): Promise<void> {
    const name = formatRelation(rel)
    const known = this.armed.get(name)
    this.armed.set(name, { rel, atMs: Date.now() })
    if (known) return
    await this.init.local.lwwTriggers.ensure()
    await this.store.arm(rel, true)
    this.log.info({ relation: name }, 'insert conflicts on this table: insert branch armed')
  }

  /**
   * Arm the table an apply error names ("schema.table", as PostgreSQL prints it unquoted), or
   * every replicated table when the name is missing or matches none. Returns what was armed.
   */
  async armFor(relation: string | undefined): Promise<string[]> {
    await this.init.local.lwwTriggers.ensure()
    const tables = (await this.store.installed()).map((t) => t.rel)
    const named = tables.filter((r) => `${r.schema}.${r.table}` === relation)
    const targets = named.length > 0 ? named : tables
    for (const rel of targets) await this.arm(rel)
    return targets.map(formatRelation)
  }

  private async run(): Promise<string> {
    let verdict: string
    try {
      const { parts, resolved } = await this.cycleOnce()
      if (resolved) this.tally.add(resolved)
      this.logResolutions(false)
      // what else the cycle did (triggers made, a branch disarmed), when it says something new
      const other = parts.filter((p) => p !== resolvedPart(resolved)).join('; ')
      verdict = parts.length > 0 ? parts.join('; ') : 'no conflicts queued'
      const news = other !== '' && !other.startsWith('no ') && verdict !== this.lastVerdict
      if (news) this.log.info({ verdict }, 'lww cycle')
      if (this.failingSinceMs !== undefined) this.log.info('lww cycles work again')
      this.failingSinceMs = undefined
    } catch (err) {
      verdict = `cycle failed: ${(err as Error).message}`
      if (verdict !== this.lastVerdict) this.log.warn({ verdict }, 'lww cycle')
      this.failingSinceMs ??= Date.now()
    }
    this.lastVerdict = verdict
    return verdict
  }

  /** Why this node is not healthy, as far as row-level resolution goes (status, /healthz). */
  healthReasons(afterMs = FAILING_REASON_MS): string[] {
    const since = this.failingSinceMs
    if (since === undefined || Date.now() - since < afterMs) return []
    const s = Math.round((Date.now() - since) / 100) / 10
    return [
      `row-level conflict resolution has failed for ${s} s (${this.lastVerdict}): rows in conflict stay different between nodes until it works again`,
    ]
  }

  /** One line for the resolutions since the last one, when due (or `now`). */
  private logResolutions(now: boolean): void {
    const line = this.tally.take(Date.now(), now)
    if (line) this.log.info(line, 'lww: conflicts resolved')
  }

  private async cycleOnce(): Promise<{ parts: string[]; resolved?: Resolved }> {
    const { local } = this.init
    await this.listen() // before the node is initialised too: the first key may come soon after
    if (!(await local.initialized())) return { parts: ['no action: node not initialised'] }
    this.settled = true
    const parts: string[] = []
    if (Date.now() - this.ensuredMs >= ENSURE_EVERY_MS) {
      this.ensuredMs = Date.now()
      const e = await local.lwwTriggers.ensure()
      if (e.installed.length > 0) parts.push(`triggers on ${e.installed.join(', ')}`)
      // tombstones past their time (lww-tombstones.ts); a failure here fails no resolution
      await this.store.pruneTombstones().catch((err: Error) => {
        this.log.warn({ err: err.message }, 'tombstones not pruned (tried again in 30 s)')
      })
    }
    let resolved: Resolved | undefined
    const queued = await this.store.queueNotEmpty() // the ledger is there too (ensure, above)
    // count only what happens from now on, this round's resolutions too (the first report came
    // after it: a node's first conflicts were neither counted nor had their table checked)
    if (this.lastId < 0) this.lastId = await this.store.lastResolutionId()
    if (queued) {
      resolved = await this.resolve()
      parts.push(resolvedPart(resolved))
      // keys queued while this round ran may have notified no one: look again at once
      this.again = true
      this.keysAtMs = Date.now()
      clearTimeout(this.quietTimer)
      // not a cycle: only a notice or the tick may start one (lww-wake.test.ts shows which)
      this.quietTimer = setTimeout(() => this.askChecks(), CONFLICTS_QUIET_MS + 10).unref()
    }
    await this.report()
    this.askChecks()
    const now = Date.now()
    for (const [name, a] of this.armed) {
      if (now - a.atMs < DISARM_AFTER_MS) continue
      this.armed.delete(name)
      await this.store.arm(a.rel, false)
      parts.push(`insert branch of ${name} disarmed`)
    }
    return { parts, ...(resolved ? { resolved } : {}) }
  }

  /** Asks for the check of the tables whose conflicts are quiet now (or went on for long). */
  private askChecks(): void {
    if (this.state.kind !== 'running') return
    const now = Date.now()
    for (const [relation, atMs] of this.bursts.due(now, now - this.keysAtMs >= CONFLICTS_QUIET_MS))
      this.init.conflictsQuiet?.(relation, atMs)
  }

  /** The round runs in a session kept for it (a repair sets and resets a session origin). */
  private held: HeldSession | undefined

  private async resolve(): Promise<Resolved> {
    this.held ??= await this.init.local.hold()
    try {
      return await lww.resolveWith(this.held)
    } catch (err) {
      // its session origin may still be set: never reuse it
      this.held.release(true)
      this.held = undefined
      throw err
    }
  }

  private async report(): Promise<void> {
    const { lastId, counts } = await this.store.resolutionsSince(this.lastId)
    this.lastId = lastId
    if (counts.length === 0) return
    this.init.onResolved?.(counts)
    for (const c of counts) this.bursts.resolved(c.relation, Date.now())
  }
}

/**
 * Per table, the conflicts resolved since its check was last asked for (check-after.ts): when
 * the last came, and since when the table has been in conflict without its check asked. The
 * check is asked for once no key was queued here for a while (every table's conflicts quiet),
 * or when a table's conflicts have gone on for `longMs` without such a moment (its own keys,
 * or another table's, keep coming): a row a resolution missed is then found and mended within
 * that time, not only once every writer stops.
 */
export class Bursts {
  private readonly last = new Map<string, number>()
  private readonly since = new Map<string, number>()

  constructor(private readonly longMs = LONG_BURST_MS) {}

  resolved(relation: string, nowMs: number): void {
    this.last.set(relation, nowMs)
    if (!this.since.has(relation)) this.since.set(relation, nowMs)
  }

  /** The tables to check now, each with the time a check must have started after to count. */
  due(nowMs: number, quiet: boolean): Array<[string, number]> {
    if (quiet) {
      const out = [...this.last]
      this.last.clear()
      this.since.clear()
      return out
    }
    const out: Array<[string, number]> = []
    for (const [relation, since] of this.since) {
      if (nowMs - since < this.longMs) continue
      out.push([relation, since])
      this.since.set(relation, nowMs)
    }
    return out
  }
}

interface Resolved {
  restored: number
  recorded: number
}

/** What resolution rounds did, summed into one log line at most every `everyMs`. */
export class Tally {
  private sum = { resolved: 0, restored: 0, rounds: 0 }
  private takenAtMs = Number.NEGATIVE_INFINITY

  constructor(private readonly everyMs: number) {}

  add(r: Resolved): void {
    this.sum.resolved += r.recorded
    this.sum.restored += r.restored
    this.sum.rounds++
  }

  /** The sums when a line is due (the first at once) or `force`d; they start again from 0. */
  take(
    nowMs: number,
    force = false,
  ): { resolved: number; restored: number; rounds: number } | undefined {
    if (this.sum.rounds === 0 || (!force && nowMs - this.takenAtMs < this.everyMs)) return undefined
    const out = this.sum
    this.sum = { resolved: 0, restored: 0, rounds: 0 }
    this.takenAtMs = nowMs
    return out
  }
}

const resolvedPart = (r: Resolved | undefined): string =>
  r ? `${r.recorded} resolved, ${r.restored} restored` : ''
