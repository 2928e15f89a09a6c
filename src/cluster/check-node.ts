// One node's part of a consistency check, as the coordinator asks for it over the mesh (and
// for itself directly): bucket hashes, rows by bucket or key, a sync point, row images, and
// the repair writes. Row origins are turned into node ids here, where the subscriptions are
// known: written here (or by a repair here) → this node; applied through trktr_sub_<self>_<p>
// → node p; a version the row-level resolver or a repair wrote under trktr_lww_<n> → node n (as
// trktr.origin_node reads it); any other origin → unknown.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../log.js'
import { parseRelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import type { RepairItem, RepairResult } from '../postgres/repair-store.js'
import { subscriptionName } from '../postgres/subscriptions.js'
import {
  GROUPS_PER_LEVEL,
  GROUPS_PER_PAGE,
  LEVEL0_BITS,
  LIST_ROWS,
  laterTomb,
  type NodeRow,
  ROWS_PER_PAGE,
} from './check.js'

/** JSON of row images one answer or request carries (the mesh frame is 1 MiB) */
export const IMAGE_BYTES_PER_CALL = 700 * 1024
const SYNC_POLL_MS = 20
const NUDGE_EVERY_POLLS = 10
/** lww.ts's lwwOrigin(n) */
const LWW_ORIGIN = /^trktr_lww_(\d+)$/
/** an answer not paged through within this long is dropped */
const PAGE_TTL_MS = 120_000
const MAX_PAGED = 8

type Group = [bucket: number, count: number, hash: string]
type Paged =
  | { kind: 'hashes'; items: Group[]; expiresMs: number }
  | { kind: 'rows'; items: NodeRow[]; expiresMs: number }

export interface HashPage {
  buckets: number[]
  counts: number[]
  hashes: string[]
  /** more groups wait on the node: ask check.page with this token */
  next?: string
}

function groupPage(groups: Group[], next: string | undefined): HashPage {
  return {
    buckets: groups.map((g) => g[0]),
    counts: groups.map((g) => g[1]),
    hashes: groups.map((g) => g[2]),
    ...(next === undefined ? {} : { next }),
  }
}

export interface RowPage {
  rows: NodeRow[]
  next?: string
}

export interface CheckNodeInit {
  local: LocalNode
  nodeId: number
  log: Logger
}

export class CheckNode {
  private readonly init: CheckNodeInit
  private readonly log: Logger
  /** one repair session at a time: the repair origin serves one session */
  private repairing: Promise<unknown> = Promise.resolve()
  /** the rest of answers larger than a page, by token */
  private readonly paged = new Map<string, Paged>()

  constructor(init: CheckNodeInit) {
    this.init = init
    this.log = init.log.child({ component: 'check' })
  }

  /** the check's queries and repairs, on the node's check pool */
  private get store(): LocalNode['checks'] {
    return this.init.local.checks
  }

  private async layout(table: string) {
    return await this.store.tableLayout(parseRelationName(table))
  }

  async hashes(p: {
    table: string
    bits: number
    parentBits?: number | undefined
    parents?: number[] | undefined
    timeoutMs: number
  }): Promise<HashPage & { rows: number; commitTs: boolean }> {
    const l = await this.layout(p.table)
    const h = await this.store.bucketHashes(
      l,
      {
        bits: p.bits,
        timeoutMs: p.timeoutMs,
        ...(p.parents === undefined || p.parentBits === undefined
          ? {}
          : { parents: p.parents, parentBits: p.parentBits }),
      },
      Math.max(GROUPS_PER_LEVEL, 2 ** LEVEL0_BITS),
    )
    const groups: Group[] = h.buckets.map((b, i) => [b, h.counts[i] ?? 0, h.hashes[i] ?? ''])
    return { rows: h.rows, commitTs: l.commitTs, ...this.hashPage(groups) }
  }

  /**
   * The page of an answer larger than one page that `next` names ("<token>/<offset>"): asked
   * again after a lost answer, it answers the same; the answer goes once its last page is out.
   */
  page(p: { token: string }): HashPage | RowPage {
    this.sweep()
    const m = /^([0-9a-f-]{36})\/(\d{1,9})$/.exec(p.token)
    const kept = m ? this.paged.get(m[1] as string) : undefined
    if (!m || !kept) throw new Error('no such page (expired, or already read)')
    const token = m[1] as string
    const offset = Number(m[2])
    const size = kept.kind === 'hashes' ? GROUPS_PER_PAGE : ROWS_PER_PAGE
    const end = offset + size
    const next = end < kept.items.length ? `${token}/${end}` : undefined
    if (next === undefined) this.paged.delete(token)
    if (kept.kind === 'hashes') return groupPage(kept.items.slice(offset, end), next)
    return { rows: kept.items.slice(offset, end), ...(next === undefined ? {} : { next }) }
  }

  private hashPage(groups: Group[]): HashPage {
    const next =
      groups.length > GROUPS_PER_PAGE
        ? this.keep({ kind: 'hashes', items: groups, expiresMs: 0 }, GROUPS_PER_PAGE)
        : undefined
    return groupPage(groups.slice(0, GROUPS_PER_PAGE), next)
  }

  private rowPage(rows: NodeRow[]): RowPage {
    const next =
      rows.length > ROWS_PER_PAGE
        ? this.keep({ kind: 'rows', items: rows, expiresMs: 0 }, ROWS_PER_PAGE)
        : undefined
    return { rows: rows.slice(0, ROWS_PER_PAGE), ...(next === undefined ? {} : { next }) }
  }

  /** Keep a whole answer for check.page; the token of its second page. */
  private keep(answer: Paged, first: number): string {
    this.sweep()
    // a coordinator that went away leaves its answers: the oldest go first
    while (this.paged.size >= MAX_PAGED) {
      const oldest = this.paged.keys().next().value
      if (oldest === undefined) break
      this.paged.delete(oldest)
    }
    const token = randomUUID()
    this.paged.set(token, { ...answer, expiresMs: Date.now() + PAGE_TTL_MS } as Paged)
    return `${token}/${first}`
  }

  private sweep(): void {
    const now = Date.now()
    for (const [k, v] of this.paged) if (v.expiresMs < now) this.paged.delete(k)
  }

  async rows(p: {
    table: string
    bits?: number | undefined
    buckets?: number[] | undefined
    keys?: string[] | undefined
    timeoutMs: number
  }): Promise<RowPage> {
    const l = await this.layout(p.table)
    const raw =
      p.keys !== undefined
        ? await this.store.rowsByKeys(l, p.keys, p.timeoutMs)
        : await this.store.rowsInBuckets(l, {
            bits: p.bits ?? 0,
            buckets: p.buckets ?? [],
            // the coordinator lists when at most LIST_ROWS are expected; twice that is wrong
            limit: LIST_ROWS * 2,
            timeoutMs: p.timeoutMs,
          })
    const origins = await this.originNodes()
    return this.rowPage(raw.map((r) => ({ k: r.k, h: r.h, ts: r.ts, origin: origins(r.o) })))
  }

  /** origin label → node id, from this node's subscriptions */
  private async originNodes(): Promise<(o: string | null) => number | null> {
    const self = this.init.nodeId
    const byName = new Map<string, number>()
    for (const s of await this.init.local.subscriptions()) byName.set(s.name, s.peer)
    return (o) => {
      if (o === null) return null
      if (o === 'local') return self
      const lww = LWW_ORIGIN.exec(o)
      if (lww) return Number(lww[1])
      return byName.get(o) ?? null
    }
  }

  /**
   * Wait until every listed member's slot on this server has confirmed this server's current
   * WAL position: they applied everything committed here before the call.
   */
  async sync(p: { nodes: number[]; timeoutMs: number }): Promise<{
    lsn: string
    reached: boolean
    waitedMs: number
    behind: Array<{ node: number; slot: string; confirmed: string | null; exists: boolean }>
  }> {
    const self = this.init.nodeId
    const started = Date.now()
    const lsn = await this.store.insertLsn()
    const slots = p.nodes.filter((n) => n !== self).map((n) => subscriptionName(n, self))
    let progress = await this.store.slotProgress(slots, lsn)
    for (let i = 0; progress.some((s) => !s.reached) && Date.now() - started < p.timeoutMs; i++) {
      // a subscriber that applied everything and has nothing more to receive confirms its
      // flush only every wal_receiver_status_interval (10 s): a WAL record past what its
      // walsender sent makes that walsender ask at once
      if (i % NUDGE_EVERY_POLLS === 0) await this.store.nudgeWalSenders()
      await new Promise((r) => setTimeout(r, SYNC_POLL_MS))
      progress = await this.store.slotProgress(slots, lsn)
    }
    const behind = progress
      .filter((s) => !s.reached)
      .map((s) => ({
        node: Number(/^trktr_sub_(\d+)_/.exec(s.slot)?.[1]),
        slot: s.slot,
        confirmed: s.confirmed,
        exists: s.exists,
      }))
    return { lsn, reached: behind.length === 0, waitedMs: Date.now() - started, behind }
  }

  async images(p: { table: string; keys: string[]; timeoutMs: number }) {
    const l = await this.layout(p.table)
    return await this.store.rowImages(l, p.keys, IMAGE_BYTES_PER_CALL, p.timeoutMs)
  }

  /**
   * The newest tombstone of each of these keys here (lww-tombstones.ts): the node that deleted
   * it and when. A delete of an origin no member stands behind is left out (not the cluster's).
   */
  async tombstones(p: { table: string; keys: string[]; timeoutMs: number }) {
    const l = await this.layout(p.table)
    const raw = await this.init.local.rowLevel.tombstonesByKeys(l, p.keys, p.timeoutMs)
    const origins = await this.originNodes()
    const newest = new Map<string, { k: string; ts: string; origin: number }>()
    for (const r of raw) {
      const origin = origins(r.o)
      if (origin === null || r.ts === null) continue
      const t = { k: r.k, ts: r.ts, origin }
      const had = newest.get(r.k)
      if (!had || laterTomb(t, had)) newest.set(r.k, t)
    }
    return { tombstones: [...newest.values()] }
  }

  async repair(p: {
    table: string
    items: RepairItem[]
    checkId: string
    coordinator: number
    rule: string
    timeoutMs: number
  }): Promise<{ results: RepairResult[] }> {
    const run = this.repairing.then(async () => {
      const l = await this.layout(p.table)
      const results = await this.store.applyRepairs(
        l,
        p.items,
        { checkId: p.checkId, coordinator: p.coordinator, rule: p.rule },
        p.timeoutMs,
      )
      const repaired = results.filter((r) => r.outcome === 'repaired').length
      this.log.info(
        {
          relation: l.relation,
          check: p.checkId,
          coordinator: p.coordinator,
          repaired,
          changed: results.filter((r) => r.outcome === 'changed').length,
          failed: results.filter((r) => r.outcome === 'failed').length,
        },
        'repair applied',
      )
      return { results }
    })
    this.repairing = run.catch(() => undefined)
    return await run
  }
}
