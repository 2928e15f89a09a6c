// Node-striped sequences (mesh mode, `sequences: "stripe"`): every sequence owned by a
// replicated table hands out, on node N, only values ≡ N (mod stride), past everything any
// node handed out before it was striped. Two nodes then never make the same id:
//  - nodes on the same stride have distinct residues (the stride is chosen so);
//  - a stride only grows, by doubling, so a node still on the old stride S and one already on
//    2S collide only if their ids are ≡ mod S: exactly the newcomer that forced the growth.
//    That newcomer waits until every member it shares a residue with has moved to the new
//    stride, and starts past what they handed out (it gathers their values first);
//  - the floor covers the values handed out unstriped (increment 1): gathered from every
//    member while the table's writers wait behind the fence (a table joining), or from every
//    ready member (a node joining, or a sequence found unstriped).
import type { Logger } from '../log.js'
import type { RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import type * as seqs from '../postgres/sequences.js'

/** The smallest stride: room for 64 nodes with ids 0..63 before any re-striping. */
export const MIN_STRIDE = 64
/** warn when an integer sequence has used this share of its range */
export const OVERFLOW_WARN_RATIO = 0.9
const OVERFLOW_EVERY_MS = 10_000

/** The smallest power-of-two stride ≥ atLeast under which the ids' residues are distinct. */
export function chooseStride(ids: readonly number[], atLeast = MIN_STRIDE): number {
  const unique = [...new Set(ids)]
  let s = MIN_STRIDE
  while (s < atLeast) s *= 2
  while (s < 2 ** 32 && new Set(unique.map((id) => id % s)).size < unique.length) s *= 2
  return s
}

/** The first value > floor that is ≡ residue (mod stride) and ≥ min. */
export function firstValue(floor: bigint, residue: bigint, stride: bigint, min: bigint): bigint {
  const base = (floor + 1n > min ? floor + 1n : min) as bigint
  const mod = (((residue - base) % stride) + stride) % stride
  return base + mod
}

/** The share of an ascending sequence's range used so far (0..1). */
export function usedRatio(s: Pick<seqs.OwnedSequence, 'min' | 'max' | 'last' | 'start'>): number {
  const last = s.last ?? s.start
  const span = Number(s.max - s.min)
  return span <= 0 ? 1 : Math.max(0, Number(last - s.min) / span)
}

export interface SequenceView {
  sequence: string
  column: string
  type: string
  stride: number
  last_value: string | null
  used_ratio: number
  near_overflow: boolean
}

/** A member's answer to sequences.used. */
export interface MemberUsed {
  node: number
  values: seqs.UsedValue[]
}

export interface StriperInit {
  local: LocalNode
  nodeId: number
  log: Logger
  enabled: boolean
  /** every node of the cluster this node knows of (removed ones excluded), itself included */
  nodeIds: () => number[]
  /** sequences.used from every ready member (throws naming one that did not answer) */
  gather: (rels: RelationName[]) => Promise<MemberUsed[]>
}

const key = (v: { schema: string; table: string; column: string }) =>
  JSON.stringify([v.schema, v.table, v.column])

/** a ready node looks again at its sequences' stripes this often (and when members change) */
const RECHECK_MS = 5000

export class SequenceStriper {
  private readonly init: StriperInit
  private readonly log: Logger
  /** the widest stride in use here: a stride never shrinks */
  private widest = MIN_STRIDE
  /** the members at the last recheck that found everything striped, and when */
  private checked = { who: '', at: 0 }
  private views: SequenceView[] = []
  private overflowAt = 0
  private readonly warned = new Set<string>()
  private waiting: string | undefined

  constructor(init: StriperInit) {
    this.init = init
    this.log = init.log.child({ component: 'sequences' })
  }

  get enabled(): boolean {
    return this.init.enabled
  }

  stride(): number {
    return chooseStride(this.init.nodeIds(), this.widest)
  }

  /** What this node's sequences of these tables handed out (answer to sequences.used). */
  async used(rels: RelationName[]): Promise<seqs.UsedValue[]> {
    return await this.init.local.sequences.usedValues(rels)
  }

  /**
   * Stripe the sequences of a table that joins the replicaset (its writers fenced on every
   * member): floors are what every member handed out, gathered by the coordinator.
   */
  async stripeTable(rel: RelationName, floors: Record<string, string>): Promise<number> {
    if (!this.init.enabled) return 0
    const owned = await this.init.local.sequences.ownedSequences([rel])
    const local = new Map(
      (await this.init.local.sequences.usedValues([rel])).map((u) => [key(u), u.used]),
    )
    for (const s of owned) {
      const k = key({ ...s.rel, column: s.column })
      const floor = maxOf([floors[k] ?? null, local.get(k) ?? null])
      await this.apply(s, floor)
    }
    return owned.length
  }

  /**
   * ensure(), on a ready node's reconcile pass: the cluster grew past the stride, or a sequence
   * was reset by hand. Looked at once the members (`nodeIds`) change, else every
   * RECHECK_MS: two queries, not on every pass.
   */
  async recheck(): Promise<void> {
    const who = this.init.nodeIds().join(',')
    if (who === this.checked.who && Date.now() - this.checked.at < RECHECK_MS) return
    if (await this.ensure()) this.checked = { who, at: Date.now() }
  }

  /**
   * Every replicated table's sequences (and those of `joining`, tables this node is about to
   * adopt) striped for the current stride (a node joining, a cluster that grew past the
   * stride, a sequence someone reset). Returns false while this node must wait (a member not
   * reachable, or not yet on the new stride).
   */
  async ensure(joining: readonly RelationName[] = []): Promise<boolean> {
    if (!this.init.enabled) return true
    const rels = uniqueRels([...(await this.init.local.sequences.replicatedTables()), ...joining])
    const owned = await this.init.local.sequences.ownedSequences(rels)
    for (const s of owned) if (s.increment > BigInt(this.widest)) this.widest = Number(s.increment)
    const stride = BigInt(this.stride())
    const residue = BigInt(this.init.nodeId) % stride
    this.watchOverflow(owned)
    const stale = owned.filter(
      (s) => s.increment !== stride || ((s.start % stride) + stride) % stride !== residue,
    )
    if (stale.length === 0) return true
    const staleRels = uniqueRels(stale.map((s) => s.rel))
    let answers: MemberUsed[]
    try {
      answers = await this.init.gather(staleRels)
    } catch (err) {
      return this.wait(`cannot read the members' sequences: ${(err as Error).message}`)
    }
    const local = new Map(
      (await this.init.local.sequences.usedValues(staleRels)).map((u) => [key(u), u.used]),
    )
    for (const s of stale) {
      const k = key({ ...s.rel, column: s.column })
      const theirs = answers.flatMap((a) =>
        a.values.filter((v) => key(v) === k).map((v) => ({ node: a.node, ...v })),
      )
      // a member on a narrower stride that shares our residue there: it could still hand out
      // our values; it moves first (it sees us in the membership and re-stripes)
      const behind = theirs.find((v) => {
        const inc = BigInt(v.increment)
        return inc > 1n && inc < stride && BigInt(v.node) % inc === BigInt(this.init.nodeId) % inc
      })
      if (behind) {
        return this.wait(
          `node ${behind.node} is not yet on stride ${stride} for ${s.rel.schema}.${s.rel.table}.${s.column}`,
        )
      }
      for (const v of theirs) {
        const inc = Number(v.increment)
        if (inc > this.widest) this.widest = inc
      }
      await this.apply(s, maxOf([local.get(k) ?? null, ...theirs.map((v) => v.used)]))
    }
    this.waiting = undefined
    return true
  }

  private wait(why: string): false {
    if (why !== this.waiting) this.log.info({ why }, 'sequences wait before striping')
    this.waiting = why
    return false
  }

  private async apply(s: seqs.OwnedSequence, floor: bigint | null): Promise<void> {
    const stride = BigInt(this.stride())
    const residue = BigInt(this.init.nodeId) % stride
    const start = firstValue(floor ?? 0n, residue, stride, s.min < 1n ? 1n : s.min)
    if (start > s.max) {
      throw new Error(
        `sequence ${s.seq.schema}.${s.seq.table} (${s.type}) has no value left past ${floor} on stride ${stride}`,
      )
    }
    await this.init.local.sequences.stripe(s.seq, stride, start)
    this.log.info(
      {
        sequence: `${s.seq.schema}.${s.seq.table}`,
        stride: Number(stride),
        start: start.toString(),
        floor: floor?.toString() ?? null,
      },
      'sequence striped',
    )
  }

  private watchOverflow(owned: seqs.OwnedSequence[]): void {
    const now = Date.now()
    if (now - this.overflowAt < OVERFLOW_EVERY_MS && this.views.length === owned.length) return
    this.overflowAt = now
    this.views = owned.map((s) => {
      const ratio = usedRatio(s)
      const near = s.type !== 'bigint' && ratio >= OVERFLOW_WARN_RATIO
      const name = `${s.seq.schema}.${s.seq.table}`
      if (near && !this.warned.has(name)) {
        this.log.warn(
          { sequence: name, type: s.type, last: s.last?.toString(), max: s.max.toString() },
          `sequence ${name} (${s.type}) has used ${Math.round(ratio * 100)}% of its range: change the column to bigint`,
        )
      }
      if (near) this.warned.add(name)
      else this.warned.delete(name)
      return {
        sequence: name,
        column: `${s.rel.schema}.${s.rel.table}.${s.column}`,
        type: s.type,
        stride: Number(s.increment),
        last_value: s.last?.toString() ?? null,
        used_ratio: Math.round(ratio * 10_000) / 10_000,
        near_overflow: near,
      }
    })
  }

  /** The replicated tables' sequences as last seen (status, metrics). */
  status(): SequenceView[] {
    return this.views
  }
}

function maxOf(values: Array<string | bigint | null>): bigint | null {
  let m: bigint | null = null
  for (const v of values) {
    if (v === null) continue
    const b = typeof v === 'bigint' ? v : BigInt(v)
    if (m === null || b > m) m = b
  }
  return m
}

function uniqueRels(rels: readonly RelationName[]): RelationName[] {
  const seen = new Map<string, RelationName>()
  for (const r of rels) seen.set(JSON.stringify([r.schema, r.table]), r)
  return [...seen.values()]
}

/** The floors for a table joining: the highest value every member used, per column. */
export function floorsOf(answers: seqs.UsedValue[][]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const list of answers) {
    for (const v of list) {
      if (v.used === null) continue
      const k = key(v)
      const cur = out[k]
      if (cur === undefined || BigInt(v.used) > BigInt(cur)) out[k] = v.used
    }
  }
  return out
}

/**
 * For a table joining with striped sequences: the highest value each column's sequence handed
 * out on any member, read behind the fence. Undefined when there is nothing to stripe: no
 * sequence owns a column here, so no member is asked (a member whose column has one, its
 * defaults differing, is striped by its own striper's next check). 'silent' when a member did
 * not answer: then no node stripes in the commit step (floors without that member's values
 * could collide with them) and each node's striper does it once every member answers.
 */
export async function gatherFloors(
  own: Promise<seqs.UsedValue[] | undefined>,
  ask: () => Array<Promise<seqs.UsedValue[] | undefined>>,
): Promise<Record<string, string> | 'silent' | undefined> {
  const mine = await own
  if (mine?.length === 0) return undefined
  const answers = [mine, ...(await Promise.all(ask()))]
  const all = answers.filter((a): a is seqs.UsedValue[] => a !== undefined)
  return all.length < answers.length ? 'silent' : floorsOf(all)
}
