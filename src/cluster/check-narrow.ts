// A check of one table, from the bucket hashes of every node down to the differing keys, then
// re-read after a sync point until each difference is settled (it stays the same) or the
// rounds run out. The decisions are check.ts's (pure); this file makes the calls.
import {
  type BucketAnswer,
  batches,
  chunks,
  differingBuckets,
  differingKeys,
  type KeyDecision,
  type KeyReport,
  keyReport,
  LEVEL0_BITS,
  LIST_ROWS,
  type NodeRow,
  nextStep,
  type Picture,
  ROWS_PER_PAGE,
  settle,
  verdictOf,
} from './check.js'
import type { CheckCalls } from './check-calls.js'
import type { Observed, Options, TableReport } from './check-types.js'

/** rounds of sync + re-read before a moving difference is reported as unsettled */
export const MAX_ROUNDS = 3
/** differing keys listed in an answer (all are counted, and all are repaired) */
export const MAX_KEYS_LISTED = 100
/** bucket numbers one request carries (a request frame is 1 MiB too) */
const BUCKETS_PER_REQUEST = 50_000

export interface Job {
  relation: string
  /** the nodes taking part, sorted */
  nodes: number[]
  /** what the report will say besides its figures (added to here) */
  notes: string[]
  opts: Options
  base: Pick<TableReport, 'relation' | 'coordinator' | 'check_id' | 'checked_at'>
  started: number
}

export async function narrowAndSettle(calls: CheckCalls, job: Job): Promise<Observed> {
  const { relation, nodes, notes, opts, base, started } = job
  const pace = opts.pace === true
  const t = calls.timeouts()
  const level0 = await calls.hashWave(
    nodes,
    { table: relation, bits: LEVEL0_BITS, timeoutMs: t.statement },
    pace,
  )
  const totalRows = Math.max(0, ...level0.map((a) => a.rows))
  let bits = LEVEL0_BITS
  let last: BucketAnswer[] = level0
  let diff = differingBuckets(level0)
  let partial = false
  while (diff.length > 0) {
    const step = nextStep(bits, diff, totalRows)
    if (step.kind === 'list') break
    partial ||= step.truncated
    const merged: BucketAnswer[] = nodes.map(() => ({
      rows: 0,
      buckets: [],
      counts: [],
      hashes: [],
    }))
    for (const part of chunks(step.parents, BUCKETS_PER_REQUEST)) {
      const got = await calls.hashWave(
        nodes,
        {
          table: relation,
          bits: step.bits,
          parentBits: step.parentBits,
          parents: part,
          timeoutMs: t.statement,
        },
        pace,
      )
      got.forEach((a, i) => {
        const m = merged[i] as BucketAnswer
        m.rows += a.rows
        m.buckets.push(...a.buckets)
        m.counts.push(...a.counts)
        m.hashes.push(...a.hashes)
      })
    }
    bits = step.bits
    last = merged
    diff = differingBuckets(merged)
  }
  let pending = new Map<string, Picture>()
  if (diff.length > 0) {
    const rows = new Map<number, NodeRow[]>(nodes.map((n) => [n, []]))
    for (const part of listChunks(diff, last)) {
      const got = await calls.rowWave(
        nodes,
        { table: relation, bits, buckets: part, timeoutMs: t.statement },
        pace,
      )
      got.forEach((a, i) => {
        rows.get(nodes[i] as number)?.push(...a)
      })
    }
    pending = differingKeys(nodes, rows)
  }
  const confirmed = new Map<string, Picture>()
  let rounds = 0
  let behind: string[] = []
  while (pending.size > 0 && rounds < MAX_ROUNDS) {
    rounds++
    const syncs = await calls.wave(nodes, 'check.sync', { nodes, timeoutMs: t.sync }, false)
    behind = syncs.flatMap((s, i) =>
      s.behind.map((b) =>
        b.exists
          ? `node ${b.node} has not applied node ${nodes[i]}'s changes within ${t.sync} ms (slot ${b.slot} confirmed ${b.confirmed ?? 'nothing'})`
          : `node ${b.node} has no slot on node ${nodes[i]} (${b.slot}): it does not receive node ${nodes[i]}'s changes`,
      ),
    )
    const keys = [...pending.keys()]
    const rows = new Map<number, NodeRow[]>(nodes.map((n) => [n, []]))
    for (const part of chunks(keys, ROWS_PER_PAGE)) {
      const got = await calls.rowWave(
        nodes,
        { table: relation, keys: part, timeoutMs: t.statement },
        false,
      )
      got.forEach((a, i) => {
        rows.get(nodes[i] as number)?.push(...a)
      })
    }
    const s = settle(pending, differingKeys(nodes, rows, keys), behind.length === 0)
    for (const [k, p] of s.confirmed) confirmed.set(k, p)
    pending = s.pending
  }
  notes.push(...behind)
  if (pending.size > 0) {
    notes.push(
      `${pending.size} row${pending.size === 1 ? '' : 's'} kept changing through ${rounds} rounds (written meanwhile, or replication behind): not counted as differing; check again`,
    )
  }
  if (partial)
    notes.push(
      'so many buckets differed that only part of them were narrowed: more rows may differ',
    )
  const listed = listKeys(confirmed, opts.from)
  const report: TableReport = {
    ...base,
    verdict: verdictOf(confirmed.size, pending.size),
    nodes: nodes.map((n, i) => ({ node: n, rows: level0[i]?.rows ?? 0 })),
    differing_rows: confirmed.size,
    keys: listed,
    keys_truncated: confirmed.size > listed.length,
    unsettled_rows: pending.size,
    partial,
    rounds,
    duration_ms: Date.now() - started,
    notes,
  }
  return { report, confirmed, nodes, commitTs: level0.every((a) => a.commitTs) }
}

/**
 * The differing buckets in requests of at most BUCKETS_PER_REQUEST buckets and about LIST_ROWS
 * rows (the largest node's count of each bucket): where nearly every row differs, the rows of
 * all differing buckets are far more than the level's estimate, and one request would ask a
 * node for more rows than it answers at once.
 */
export function listChunks(diff: readonly number[], answers: readonly BucketAnswer[]): number[][] {
  const most = new Map<number, number>()
  for (const a of answers)
    a.buckets.forEach((b, i) => {
      most.set(b, Math.max(most.get(b) ?? 0, a.counts[i] ?? 0))
    })
  return batches(diff, (b) => most.get(b) ?? 0, LIST_ROWS, BUCKETS_PER_REQUEST)
}

/** What a check that failed observed: nothing, and why in its notes. */
export function failedObservation(
  base: Pick<TableReport, 'relation' | 'coordinator' | 'check_id' | 'checked_at'>,
  nodes: number[],
  notes: string[],
  started: number,
): Observed {
  return {
    report: {
      ...base,
      verdict: 'failed',
      nodes: [],
      differing_rows: 0,
      keys: [],
      keys_truncated: false,
      unsettled_rows: 0,
      partial: false,
      rounds: 0,
      duration_ms: Date.now() - started,
      notes,
    },
    confirmed: new Map(),
    nodes,
    commitTs: false,
  }
}

/** The differing keys an answer lists: the first MAX_KEYS_LISTED in key order. */
export function listKeys(
  confirmed: ReadonlyMap<string, Picture>,
  from?: number,
  decided?: (k: string) => KeyDecision | undefined,
): KeyReport[] {
  return [...confirmed]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, MAX_KEYS_LISTED)
    .map(([k, p]) => keyReport(k, p, from, decided?.(k)))
}
