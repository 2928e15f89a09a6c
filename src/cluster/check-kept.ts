// Kept values (issue 10, TOAST): PostgreSQL sends a value stored out of line that an UPDATE did
// not change as "unchanged", and the apply worker keeps this node's own value there. Where the
// version it replaced came from another origin, that value may not be the writer's: the row
// may hold a value no node wrote (lww.ts keptSql queues the key here). Each such row is
// compared with its writer's copy of the same version — same origin commit time, same writer —
// and takes it when they differ (a compare-and-set write under the writer's origin and time,
// check.repair). A row whose writer has moved on is compared again later: the newer version
// comes here too, and the entry stays until the two agree. Only the writer's copy is taken: a
// version's content is what its writer holds, so two nodes never take each other's.
import { randomUUID } from 'node:crypto'
import { NotFoundError } from '../errors.js'
import type { Logger } from '../log.js'
import type { KeptEntry } from '../postgres/lww-kept.js'
import type { NodeRow } from './check.js'
import { CheckCalls, type CheckPort, sleep } from './check-calls.js'
import { resultOf } from './rpc-results.js'

/** what one node keeps of its kept values (trktr.kept_values, postgres/lww-kept.ts) */
export interface KeptStore {
  tables(): Promise<string[]>
  pending(relation: string, timeoutMs: number): Promise<KeptEntry[]>
  done(relation: string, entries: string[]): Promise<void>
}

/** a table's kept values are compared this long after the last news of them */
const KEPT_SOON_MS = 100
/** entries left (a writer unreachable, or moved on) are compared again after this, doubling */
const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 30_000
const TIMEOUT_MS = 30_000
const STOP_WAIT_MS = 2000
/** the tables with entries are listed again this often (news missed) */
const FALLBACK_MS = 30_000

export interface KeptValuesInit {
  nodeId: number
  port: CheckPort
  store: KeptStore
  log: Logger
}

/** Compares this node's kept values with their writers' copies, table by table, soon after news. */
export class KeptValues {
  private readonly init: KeptValuesInit
  private readonly log: Logger
  private readonly calls: CheckCalls
  private stopping = new AbortController()
  private running = false
  /** per table: its timer, and the retry delay after entries were left */
  private readonly soon = new Map<string, { timer: NodeJS.Timeout; retryMs: number }>()
  private startTimer: NodeJS.Timeout | undefined
  /** one table at a time */
  private chain: Promise<void> = Promise.resolve()

  constructor(init: KeptValuesInit) {
    this.init = init
    this.log = init.log.child({ component: 'kept-values' })
    this.calls = new CheckCalls({
      port: init.port,
      log: this.log,
      stopping: () => this.stopping.signal,
    })
  }

  /**
   * Start. The entries left from an earlier run are compared once the mesh had a moment, and
   * every FALLBACK_MS the tables with entries are listed again (news missed: the arbiter's
   * LISTEN connection was down when an apply worker announced one).
   */
  start(afterMs = 5000): void {
    if (this.running) return
    this.running = true
    this.stopping = new AbortController()
    const look = () => {
      if (!this.running) return
      this.startTimer = setTimeout(look, FALLBACK_MS)
      this.startTimer.unref()
      this.init.store.tables().then(
        (tables) => {
          for (const relation of tables) if (!this.soon.has(relation)) this.compareSoon(relation, 0)
        },
        (err: Error) => this.log.debug({ err: err.message }, 'cannot list kept values'),
      )
    }
    this.startTimer = setTimeout(look, afterMs)
    this.startTimer.unref()
  }

  async stop(): Promise<void> {
    this.running = false
    this.stopping.abort()
    clearTimeout(this.startTimer)
    for (const s of this.soon.values()) clearTimeout(s.timer)
    this.soon.clear()
    // a comparison in progress is not waited for long: its calls end with the mesh after this
    await Promise.race([this.chain, sleep(STOP_WAIT_MS, new AbortController().signal)])
  }

  /** An apply worker queued a kept value of this table ("schema.table"). */
  compareSoon(relation: string, delayMs = KEPT_SOON_MS): void {
    if (!this.running) return
    const known = this.soon.get(relation)
    if (known) clearTimeout(known.timer)
    const retryMs = known?.retryMs ?? RETRY_MIN_MS
    const timer = setTimeout(() => {
      this.chain = this.chain.then(() => this.compare(relation, retryMs))
    }, delayMs)
    timer.unref()
    this.soon.set(relation, { timer, retryMs })
  }

  private async compare(relation: string, retryMs: number): Promise<void> {
    this.soon.delete(relation)
    if (!this.running) return
    let left = 0
    try {
      const r = await settleKept(
        { calls: this.calls, port: this.init.port, nodeId: this.init.nodeId },
        this.init.store,
        relation,
      )
      left = r.left
      if (r.taken > 0)
        this.log.info(
          { relation, taken: r.taken, left },
          "kept values: rows took their writer's copy",
        )
    } catch (err) {
      // a table dropped since: its entries went with it (keptTables), nothing to compare
      left = err instanceof NotFoundError ? 0 : 1
      this.log.warn({ relation, err: (err as Error).message }, 'kept values: comparison failed')
    }
    if (left > 0 && this.running) {
      this.compareSoon(relation, retryMs)
      const s = this.soon.get(relation)
      if (s) s.retryMs = Math.min(RETRY_MAX_MS, retryMs * 2)
    }
  }
}

/**
 * One pass over a table's kept values: each row compared with its writer's copy of the same
 * version, and set to it where they differ. Returns how many rows took it and how many entries
 * are left for a later pass.
 */
export async function settleKept(
  ctx: { calls: CheckCalls; port: CheckPort; nodeId: number },
  store: KeptStore,
  relation: string,
): Promise<{ taken: number; left: number }> {
  const pending = await store.pending(relation, TIMEOUT_MS)
  if (pending.length === 0) return { taken: 0, left: 0 }
  // a table taken out of the replicaset since: no writer's copy to compare with
  if (!(await ctx.port.tables()).includes(relation)) {
    await store.done(
      relation,
      pending.map((p) => p.entry),
    )
    return { taken: 0, left: 0 }
  }
  const entryOf = new Map(pending.map((p) => [p.k, p.entry]))
  const read = async (node: number, keys: string[]) =>
    (await ctx.calls.rowWave([node], { table: relation, keys, timeoutMs: TIMEOUT_MS }, false))[0] ??
    []
  const done: string[] = []
  const byWriter = new Map<number, NodeRow[]>()
  const mine = new Map((await read(ctx.nodeId, [...entryOf.keys()])).map((r) => [r.k, r]))
  for (const [k, entry] of entryOf) {
    const r = mine.get(k)
    // gone here, or a version written here (its content is this node's by definition)
    if (!r || r.origin === null || r.origin === ctx.nodeId) done.push(entry)
    else byWriter.set(r.origin, [...(byWriter.get(r.origin) ?? []), r])
  }
  let taken = 0
  const { nodes } = ctx.port.participants()
  for (const [writer, rows] of byWriter) {
    if (!nodes.includes(writer)) continue // not reachable now: a later pass
    const theirs = new Map(
      (
        await read(
          writer,
          rows.map((r) => r.k),
        )
      ).map((r) => [r.k, r]),
    )
    const differ: NodeRow[] = []
    for (const r of rows) {
      const w = theirs.get(r.k)
      // the writer holds another version now (a newer one, on its way here): a later pass
      if (!w || w.ts !== r.ts || w.origin !== r.origin) continue
      if (w.h === r.h) done.push(entryOf.get(r.k) as string)
      else differ.push(r)
    }
    if (differ.length === 0) continue
    const im = await ctx.calls.callRead(
      writer,
      'check.images',
      { table: relation, keys: differ.map((r) => r.k), timeoutMs: TIMEOUT_MS },
      TIMEOUT_MS + 5000,
    )
    const images = new Map(im.images.map((x) => [x.k, x]))
    const items = differ.flatMap((r) => {
      const x = images.get(r.k)
      const w = theirs.get(r.k)
      // moved since it was read (or too large for the mesh): a later pass
      if (!x || x.h !== w?.h) return []
      return [{ k: r.k, expect: r.h, image: x.row, ts: r.ts, winner: writer }]
    })
    if (items.length === 0) continue
    const answer = resultOf(
      'check.repair',
      await ctx.port.call(
        ctx.nodeId,
        'check.repair',
        {
          table: relation,
          items,
          checkId: randomUUID(),
          coordinator: ctx.nodeId,
          rule: `kept value: the writer's copy (node ${writer})`,
          timeoutMs: TIMEOUT_MS,
        },
        TIMEOUT_MS + 5000,
      ),
    )
    for (const x of answer.results) {
      if (x.outcome === 'repaired') taken++
      if (x.outcome === 'repaired' || x.outcome === 'unchanged')
        done.push(entryOf.get(x.k) as string)
    }
  }
  await store.done(relation, done)
  return { taken, left: pending.length - done.length }
}
