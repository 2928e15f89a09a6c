// What the server log says about failing subscriptions, built from parsed records by
// structure only (the words may be German): an apply error names its subscription through the
// replication origin "pg_<oid>" in its context; an error without that context (a lost
// connection) is tied to the subscription named in the next line of the same process.
//
// Only records written by apply workers count (backend_type, which PostgreSQL prints itself):
// any user can make the server log text of their choosing, worded like an apply worker's
// conflict and its "subscription ... has been disabled" line (issue 8, item 4).
import {
  findQuotedNames,
  isApplyWorkerRecord,
  type LogRecord,
  parseApplyContext,
  parseKeyDetail,
} from '../postgres/logparse.js'

export interface ApplyFailure {
  /** stable identity of this failure: the same failure is acted on once */
  id: string
  at: string
  pid: number
  sqlState: string
  message: string
  detail?: string
  relation?: string
  finishLsn?: string
  remoteXid?: number
  key?: string
  value?: string
}

const ERROR_LEVELS = new Set(['ERROR', 'FATAL', 'PANIC'])

export function isErrorRecord(r: LogRecord): boolean {
  const level = (r as { level?: string }).level ?? r.severity
  return ERROR_LEVELS.has(level)
}

const MAX_PIDS = 1000

export class FailureIndex {
  private readonly byOid = new Map<number, ApplyFailure>()
  private readonly byName = new Map<string, ApplyFailure>()
  /** an apply worker's error still waiting for that worker's next record to name it */
  private readonly unnamedByPid = new Map<number, ApplyFailure>()

  /**
   * Take new records in log order; `names` are the subscriptions that exist now, `roots` each
   * partition's partitioned table (a failure names the table the replicaset has).
   */
  add(
    records: readonly LogRecord[],
    names: readonly string[],
    roots?: ReadonlyMap<string, string>,
  ): void {
    const known = new Set(names)
    for (const r of records) {
      // only the very next record of the same process can name the failure's subscription;
      // a record of another kind under that pid means the pid was reused
      const prior = this.unnamedByPid.get(r.pid)
      this.unnamedByPid.delete(r.pid)
      if (!isApplyWorkerRecord(r)) continue
      if (isErrorRecord(r)) {
        const f = toFailure(r)
        if (f.relation !== undefined) f.relation = roots?.get(f.relation) ?? f.relation
        const ctx = r.context === undefined ? undefined : parseApplyContext(r.context)
        if (ctx) this.byOid.set(ctx.subscriptionOid, f)
        this.unnamedByPid.set(r.pid, f)
        if (this.unnamedByPid.size > MAX_PIDS) {
          const first = this.unnamedByPid.keys().next().value
          if (first !== undefined) this.unnamedByPid.delete(first)
        }
        continue
      }
      if (!prior) continue
      const named = findQuotedNames(r.message).find((n) => known.has(n))
      if (named !== undefined) this.byName.set(named, prior)
    }
  }

  /** The most recent failure logged for this subscription, if any. */
  latestFor(name: string, oid: number): ApplyFailure | undefined {
    const a = this.byName.get(name)
    const b = this.byOid.get(oid)
    if (!a) return b
    if (!b) return a
    return a.at >= b.at ? a : b
  }
}

function toFailure(r: LogRecord): ApplyFailure {
  const ctx = r.context === undefined ? undefined : parseApplyContext(r.context)
  const kv = r.detail === undefined ? undefined : parseKeyDetail(r.detail)
  return {
    id: `${r.timestamp}|${r.pid}|${r.sqlState}`,
    at: r.timestamp,
    pid: r.pid,
    sqlState: r.sqlState,
    message: r.message,
    ...(r.detail === undefined ? {} : { detail: r.detail }),
    ...(ctx?.relation === undefined ? {} : { relation: ctx.relation }),
    ...(ctx?.finishLsn === undefined ? {} : { finishLsn: ctx.finishLsn }),
    ...(ctx?.remoteXid === undefined ? {} : { remoteXid: ctx.remoteXid }),
    ...(kv === undefined ? {} : { key: kv.key, value: kv.value }),
  }
}
