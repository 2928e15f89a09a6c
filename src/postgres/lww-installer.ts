// The row-level resolution's triggers on this node's replicated tables (lww.ts makes them):
// installed on exactly the tables that resolve row by row, re-made when a table's columns
// change, one install at a time. LocalNode owns one.

import type { Logger } from '../log.js'
import type { Db, Queryable } from './db.js'
import { formatRelation, type RelationName } from './ident.js'
import * as lww from './lww.js'
import { LWW_DDL } from './lww-schema.js'
import { logMissingRows, stopLoggingMissingRows } from './missing-rows.js'

export interface LwwInstallerInit {
  db: Db
  log: Logger
  /** row-level last-writer-wins is on (else every call does nothing) */
  enabled: boolean
  /** which tables resolve row by row (a per-table resolver override); default: all of them */
  lwwFor?: ((rel: RelationName) => boolean) | undefined
  /** apply workers report the rows they skip (missing-rows.ts); else that is undone */
  recordMissingRows?: boolean
  /** the node's trktr schema exists */
  initialized: () => Promise<boolean>
  /**
   * the writer re-writes out-of-line values an UPDATE kept (standalone mode: no mesh to ask a
   * row's writer, lww-local.ts)
   */
  writerToast?: boolean
}

export class LwwInstaller {
  private readonly init: LwwInstallerInit
  private readonly db: Db
  private readonly log: Logger
  /** the table signature each installed trigger function was generated for */
  private readonly signatures = new Map<string, string>()
  private queue: Promise<void> = Promise.resolve()
  /** whether apply workers report the rows they skip (missing-rows.ts), once known */
  private missingRows: 'unknown' | 'on' | 'off' = 'unknown'
  /**
   * the queue and ledger tables, made once per process (~9 ms a time; forget() resets); one
   * promise for every caller: two sessions running the DDL at once collide on its types
   */
  private schema: Promise<void> | undefined

  constructor(init: LwwInstallerInit) {
    this.init = init
    this.db = init.db
    this.log = init.log
  }

  /** Apply workers may report skipped rows in the server log (on, or not known yet). */
  get reportsMissingRows(): boolean {
    return this.missingRows !== 'off'
  }

  /** The node's trktr schema was dropped (teardown): its tables are made again when needed. */
  forget(): void {
    this.schema = undefined
    this.signatures.clear()
  }

  private async makeSchema(): Promise<void> {
    this.schema ??= this.db.query(LWW_DDL).then(
      () => undefined,
      (err: unknown) => {
        this.schema = undefined
        throw err
      },
    )
    await this.schema
  }

  /**
   * With row-level resolution on: the replica triggers exist on exactly the replicated tables,
   * each made for the table's current columns. Runs before a refresh that may bring new tables
   * (a proposal's refresh does not: its prepare installed them), so a table never receives a
   * peer's change before its triggers are there.
   */
  async ensure(): Promise<{ installed: string[] }> {
    return await this.oneAtATime(() => this.ensureNow())
  }

  /** Set the role's log level for missing rows as configured, once per run. */
  private async logMissingRows(): Promise<void> {
    if (!this.init.recordMissingRows) {
      await stopLoggingMissingRows(this.db)
      this.missingRows = 'off'
      return
    }
    this.missingRows = (await logMissingRows(this.db)) ? 'on' : 'off'
    if (this.missingRows === 'off')
      this.log.warn(
        'update_missing and delete_missing cannot be recorded: the role may not set ' +
          'log_min_messages (GRANT SET ON PARAMETER log_min_messages to it)',
      )
    else this.log.info('apply workers report the rows they skip (the role logs DEBUG1 here)')
  }

  /**
   * Trigger installs run one at a time: the start-up pass and a PREPARE re-creating the same
   * trigger function in two sessions fail with "tuple concurrently updated".
   */
  private oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  private async ensureNow(): Promise<{ installed: string[] }> {
    const out = { installed: [] as string[] }
    if (!this.init.enabled || !(await this.init.initialized())) return out
    await this.makeSchema()
    if (this.missingRows === 'unknown') await this.logMissingRows()
    const have = await lww.installed(this.db)
    const wanted = (await lww.replicated(this.db)).filter((r) => this.init.lwwFor?.(r) ?? true)
    for (const rel of wanted) {
      if (await this.installNow(rel, have)) out.installed.push(formatRelation(rel))
    }
    // a table whose override says otherwise now (set before a restart): no row-level triggers
    for (const h of have) {
      if (wanted.some((r) => r.schema === h.rel.schema && r.table === h.rel.table)) continue
      if (this.init.lwwFor?.(h.rel) ?? true) continue
      await this.db.tx((c) => lww.uninstall(c, h.rel))
      this.signatures.delete(`${h.rel.schema}\u0000${h.rel.table}`)
      this.log.info(
        { relation: formatRelation(h.rel) },
        'row-level triggers removed: resolver override',
      )
    }
    if (out.installed.length > 0) this.log.info(out, 'row-level resolution triggers')
    return out
  }

  /**
   * Install (or re-make, after a column change) one table's triggers. A proposal to add a table
   * does this at PREPARE, before the write fence: with writers waiting on the fence, the
   * triggers could not be created any more. Triggers on a table that is not replicated (an
   * aborted proposal) are harmless: they fire only in apply workers, and none applies it.
   */
  async install(rel: RelationName, have?: lww.Installed[]): Promise<boolean> {
    return await this.oneAtATime(() => this.installNow(rel, have))
  }

  private async installNow(rel: RelationName, have?: lww.Installed[]): Promise<boolean> {
    if (!this.init.enabled || !(this.init.lwwFor?.(rel) ?? true)) return false
    const t = await lww.describe(this.db, rel)
    if (!t) return false
    const key = `${rel.schema}\u0000${rel.table}`
    const signature = lwwSignature(t)
    const present = (have ?? (await lww.installed(this.db))).some(
      (h) => h.rel.schema === rel.schema && h.rel.table === rel.table,
    )
    if (present && this.signatures.get(key) === signature) return false
    await this.makeSchema()
    const made = await this.db.tx(async (c) => {
      // read again under the table's lock: a schema change may have committed since
      const fresh = await lww.lockAndDescribe(c, rel)
      if (fresh) await lww.install(c, fresh, this.init.writerToast)
      return fresh
    })
    if (!made) return false
    this.signatures.set(key, lwwSignature(made))
    return true
  }

  /**
   * Re-make one table's row-level triggers inside the caller's transaction (a cluster schema
   * change): the trigger function names the table's columns, and one made for the old columns
   * would fail or drop a column in the first conflict after the change.
   */
  async remakeIn(q: Queryable, rel: RelationName): Promise<void> {
    await this.makeIn(q, rel)
    // made in a transaction that may still roll back: the next pass compares afresh
    this.signatures.delete(`${rel.schema}\u0000${rel.table}`)
  }

  /**
   * Install one table's triggers inside the caller's transaction, which holds the table's lock
   * (a proposal's prepare, in the transaction that raises its fence). Returns what to call
   * once that transaction committed.
   */
  async installIn(q: Queryable, rel: RelationName): Promise<() => void> {
    const made = await this.makeIn(q, rel)
    return () => {
      if (made) this.signatures.set(`${rel.schema}\u0000${rel.table}`, lwwSignature(made))
    }
  }

  private async makeIn(q: Queryable, rel: RelationName): Promise<lww.LwwTable | undefined> {
    if (!this.init.enabled || !(this.init.lwwFor?.(rel) ?? true)) return undefined
    await this.makeSchema()
    const t = await lww.describeIn(q, rel)
    if (t) await lww.install(q, t, this.init.writerToast)
    return t
  }
}

/** What a table's trigger function is generated from: re-made when it changes. */
function lwwSignature(t: lww.LwwTable): string {
  const uniques = t.uniques.map((u) => `${u.columns.join(',')}${u.nullsNotDistinct ? '!' : ''}`)
  const toastable = t.toastable.map((c) => c.name).join(',')
  return `${t.oid}:${t.columns.join(',')}:${t.pk.join(',')}:${t.referenced}:${uniques.join(';')}:${toastable}`
}
