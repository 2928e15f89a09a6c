// The consistency check's decisions, pure (no I/O): which buckets differ, how to narrow them,
// which keys differ, when a difference is settled (not merely in flight), which version wins,
// and what each node must write. checker.ts observes and acts around these.
//
// Narrowing: level 0 hashes every table into 2^12 buckets (one scan per node, 4096 small
// groups back). A differing bucket is split into 2^k sub-buckets (more bits of the same key
// hash) until the rows left in the differing buckets are few enough to list as (key, row
// hash); each level is one filtered scan per node. A healthy table costs one scan per node.

export const LEVEL0_BITS = 12
export const MAX_BITS = 48
/** list the rows of the differing buckets once at most this many are expected */
export const LIST_ROWS = 20_000
/** narrow until about this many rows are left per bucket */
export const LEAF_ROWS = 4
/**
 * A node answers a level (or a listing) from one scan and hands it out in pages of this many
 * groups or rows, each well under the mesh's 1 MiB frame; the rest waits on the node for the
 * coordinator to page through it.
 */
export const GROUPS_PER_PAGE = 16_384
export const ROWS_PER_PAGE = 5000
/** at most this many sub-buckets per level; past it, descend into the first buckets only */
export const GROUPS_PER_LEVEL = 262_144

export interface BucketAnswer {
  rows: number
  buckets: number[]
  counts: number[]
  hashes: string[]
}

/** Buckets whose count or hash is not the same on every node (absent = empty). */
export function differingBuckets(answers: readonly BucketAnswer[]): number[] {
  const seen = new Map<number, string[]>()
  answers.forEach((a, i) => {
    a.buckets.forEach((b, j) => {
      const v = seen.get(b) ?? answers.map(() => '0:0')
      v[i] = `${a.counts[j]}:${a.hashes[j]}`
      seen.set(b, v)
    })
  })
  const out: number[] = []
  for (const [b, v] of seen) if (v.some((x) => x !== v[0])) out.push(b)
  return out.sort((a, b) => a - b)
}

export type Step =
  | { kind: 'list'; bits: number; buckets: number[] }
  | { kind: 'refine'; parentBits: number; bits: number; parents: number[]; truncated: boolean }

/**
 * What to do with the differing buckets at `bits`, given the table's size (the largest node's
 * row count): list their rows, or narrow them by k more bits.
 */
export function nextStep(bits: number, differing: readonly number[], totalRows: number): Step {
  const perBucket = totalRows / 2 ** bits
  if (perBucket * differing.length <= LIST_ROWS || bits >= MAX_BITS) {
    return { kind: 'list', bits, buckets: [...differing] }
  }
  const k = Math.min(MAX_BITS - bits, Math.max(1, Math.ceil(Math.log2(perBucket / LEAF_ROWS))))
  const room = Math.max(1, Math.floor(GROUPS_PER_LEVEL / 2 ** k))
  return {
    kind: 'refine',
    parentBits: bits,
    bits: bits + k,
    parents: differing.slice(0, room),
    truncated: differing.length > room,
  }
}

/** Split a list into runs of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * Split a list into runs whose weights add up to at most `max` (an item heavier than that goes
 * alone) and of at most `count` items.
 */
export function batches<T>(
  items: readonly T[],
  weight: (item: T) => number,
  max: number,
  count = Number.POSITIVE_INFINITY,
): T[][] {
  const out: T[][] = []
  let cur: T[] = []
  let sum = 0
  for (const it of items) {
    const w = weight(it)
    if (cur.length > 0 && (sum + w > max || cur.length >= count)) {
      out.push(cur)
      cur = []
      sum = 0
    }
    cur.push(it)
    sum += w
  }
  if (cur.length > 0) out.push(cur)
  return out
}

/** One row version as a node reports it; origin is the node that wrote it, if known. */
export interface Version {
  h: string
  /** origin commit time, µs since 1970 (text) */
  ts: string | null
  origin: number | null
}

export interface NodeRow extends Version {
  k: string
}

/** node → its version of a key, null when the key is absent there */
export type Picture = ReadonlyMap<number, Version | null>

/**
 * The keys whose versions are not the same on every node, with each node's version. With
 * `only`, just those keys are considered (rows re-read by key).
 */
export function differingKeys(
  nodes: readonly number[],
  rows: ReadonlyMap<number, readonly NodeRow[]>,
  only?: Iterable<string>,
): Map<string, Picture> {
  const byKey = new Map<string, Map<number, Version | null>>()
  const picture = (k: string) => {
    let p = byKey.get(k)
    if (!p) {
      p = new Map(nodes.map((n) => [n, null]))
      byKey.set(k, p)
    }
    return p
  }
  if (only) for (const k of only) picture(k)
  const wanted = only ? new Set(byKey.keys()) : undefined
  for (const n of nodes) {
    for (const r of rows.get(n) ?? []) {
      if (wanted && !wanted.has(r.k)) continue
      picture(r.k).set(n, { h: r.h, ts: r.ts, origin: r.origin })
    }
  }
  const out = new Map<string, Picture>()
  for (const [k, p] of byKey) {
    const hashes = [...p.values()].map((v) => v?.h ?? null)
    if (hashes.some((h) => h !== hashes[0])) out.set(k, p)
  }
  return out
}

/** The same versions on the same nodes (a difference that did not move). */
export function samePicture(a: Picture, b: Picture): boolean {
  if (a.size !== b.size) return false
  for (const [n, va] of a) {
    const vb = b.get(n)
    if (vb === undefined) return false
    if (va === null || vb === null) {
      if (va !== vb) return false
      continue
    }
    if (va.h !== vb.h || va.ts !== vb.ts) return false
  }
  return true
}

/**
 * After every node applied what every other node had committed (a sync), the keys re-read:
 * a key that differs with the very same versions as before the sync is settled — whatever made
 * the difference had reached every node and still did not make them agree. A key that agrees
 * now was in flight. A key whose versions moved is looked at again in the next round.
 */
export function settle(
  before: ReadonlyMap<string, Picture>,
  now: ReadonlyMap<string, Picture>,
  synced: boolean,
): { confirmed: Map<string, Picture>; pending: Map<string, Picture> } {
  const confirmed = new Map<string, Picture>()
  const pending = new Map<string, Picture>()
  for (const [k, prev] of before) {
    const cur = now.get(k)
    if (!cur) continue
    if (synced && samePicture(prev, cur)) confirmed.set(k, cur)
    else pending.set(k, cur)
  }
  return { confirmed, pending }
}

export const tsOf = (v: Pick<Version, 'ts'>): bigint => (v.ts === null ? -1n : BigInt(v.ts))

/** a is the later delete (check-deletes.ts): later origin commit time, ties to the higher node */
export function laterTomb(
  a: { ts: string; origin: number },
  b: { ts: string; origin: number },
): boolean {
  const x = BigInt(a.ts)
  const y = BigInt(b.ts)
  return x !== y ? x > y : a.origin > b.origin
}

/**
 * The winning version of a key: the one a chosen node holds (`from`), or else the last
 * writer's — the latest origin commit time, ties to the higher origin nodeId, then to the
 * higher nodeId holding it. This is the row-level resolver's order (trktr.newer in
 * src/postgres/lww.ts): an unknown time is the oldest, an unknown origin the lowest (-1). A key
 * absent on a node has no time there: any existing version wins over its absence (without
 * tombstones a delete's time is unknown; `from` a node without the row makes the delete win).
 */
export function winner(picture: Picture, from?: number): { node: number; version: Version | null } {
  if (from !== undefined) return { node: from, version: picture.get(from) ?? null }
  let best: { node: number; version: Version } | undefined
  for (const [node, v] of picture) {
    if (v === null) continue
    if (!best) {
      best = { node, version: v }
      continue
    }
    const a = tsOf(v)
    const b = tsOf(best.version)
    const oa = v.origin ?? -1
    const ob = best.version.origin ?? -1
    if (a > b || (a === b && (oa > ob || (oa === ob && node > best.node))))
      best = { node, version: v }
  }
  if (!best) {
    const [node] = [...picture.keys()].sort((x, y) => x - y)
    return { node: node ?? 0, version: null }
  }
  return best
}

/** What one node must write for a key: its current version (CAS) and whether the row goes. */
export interface Fix {
  node: number
  /** the row hash there as seen; null: absent */
  expect: string | null
  /** the winner has no row: delete */
  remove: boolean
}

/** The nodes whose version is not the winner's, each with what it must do. */
export function fixesFor(picture: Picture, win: { version: Version | null }): Fix[] {
  const out: Fix[] = []
  for (const [node, v] of picture) {
    const target = win.version?.h ?? null
    const here = v?.h ?? null
    if (here === target) continue
    out.push({ node, expect: here, remove: win.version === null })
  }
  return out.sort((a, b) => a.node - b.node)
}

export type Verdict = 'consistent' | 'differs' | 'unsettled' | 'failed'

/** consistent: no difference; differs: settled differences; unsettled: only moving ones. */
export function verdictOf(differing: number, unsettled: number): Verdict {
  if (differing > 0) return 'differs'
  return unsettled > 0 ? 'unsettled' : 'consistent'
}

/** A key as the answer shows it: its values, and what each node holds. */
export interface KeyReport {
  key: unknown
  nodes: Record<string, { hash: string; committed: string | null; origin: number | null } | null>
  /** the node whose version a repair writes (a DELETE's: the node that deleted) */
  winner: number
  /** how the tombstones decided a key some nodes lack (check-deletes.ts), as the repair will */
  rule?: string
}

/** A key some nodes lack, decided by the tombstones: the winner and the rule (check-deletes.ts). */
export interface KeyDecision {
  winner: number
  rule: string
}

export function keyReport(
  k: string,
  picture: Picture,
  from?: number,
  decided?: KeyDecision,
): KeyReport {
  const nodes: KeyReport['nodes'] = {}
  for (const [n, v] of [...picture].sort((a, b) => a[0] - b[0])) {
    nodes[String(n)] = v === null ? null : { hash: v.h, committed: isoOf(v.ts), origin: v.origin }
  }
  let key: unknown = k
  try {
    key = JSON.parse(k)
  } catch {
    // a key text that is not JSON is shown as it is
  }
  if (decided) return { key, nodes, winner: decided.winner, rule: decided.rule }
  return { key, nodes, winner: winner(picture, from).node }
}

/** µs since 1970 (text) → ISO time with microseconds, UTC */
export function isoOf(us: string | null): string | null {
  if (us === null) return null
  const n = BigInt(us)
  const ms = n / 1000n
  const rest = (n % 1000n).toString().padStart(3, '0')
  const iso = new Date(Number(ms)).toISOString()
  return `${iso.slice(0, 23)}${rest}Z`
}
