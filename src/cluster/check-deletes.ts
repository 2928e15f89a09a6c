// A key some nodes hold a row for and others do not, after the check's sync points (nothing of
// it in flight): a DELETE that the holders never applied, or a row written again after a DELETE
// that reached one node last, out of order — the same picture. Each node's tombstones
// (postgres/lww-tombstones.ts: the newest DELETE of each key there, its origin and origin
// commit time) tell them apart. Let D be the newest DELETE of the key any node recorded:
// - a node holding the row recorded D too, and holds a version written after it: the row was
//   written after the delete, the newest version wins (LWW, as between two versions);
// - otherwise D wins, and the row goes where it is: no holder applied it, so each held a
//   version concurrent with it or older, and a DELETE wins over a concurrent UPDATE — what
//   every node would have done had its apply worker found the row (PostgreSQL 17's can skip a
//   DELETE of a row another session updates at that moment, commitfest 5151).
// Without a tombstone (none kept: older than TOMBSTONES_KEEP_MS, a row lost around
// replication) the key is left as before: the operator's repair keeps the row.
import type { Picture } from './check.js'
import { laterTomb, tsOf, winner } from './check.js'
import type { CheckCalls } from './check-calls.js'
import { listKeys } from './check-narrow.js'
import { heldEverywhere, ruleOf } from './check-repair.js'
import type { Observed } from './check-types.js'

/** a node's newest DELETE of a key: its origin commit time (µs, text) and the node that made it */
export interface Tomb {
  ts: string
  origin: number
}

/** node → key → its tombstone there */
export type Tombs = ReadonlyMap<number, ReadonlyMap<string, Tomb>>

const later = laterTomb

export type Decision = { kind: 'delete'; tomb: Tomb } | { kind: 'row' }

/** some nodes hold a row for the key, others do not */
function split(picture: Picture): boolean {
  const values = [...picture.values()]
  return values.some((v) => v === null) && values.some((v) => v !== null)
}

/** What the tombstones decide for a key held by some nodes only (undefined: nothing to go by). */
export function decideAbsent(k: string, picture: Picture, tombs: Tombs): Decision | undefined {
  if (!split(picture)) return undefined
  let newest: Tomb | undefined
  for (const node of picture.keys()) {
    const t = tombs.get(node)?.get(k)
    if (t && (!newest || later(t, newest))) newest = t
  }
  if (!newest) return undefined
  const d = newest
  const after = [...picture].some(([node, v]) => {
    const t = tombs.get(node)?.get(k)
    if (v === null || !t || t.ts !== d.ts || t.origin !== d.origin) return false
    return later({ ts: String(tsOf(v)), origin: v.origin ?? -1 }, d)
  })
  return after ? { kind: 'row' } : { kind: 'delete', tomb: d }
}

/**
 * What a repair takes from a check's observation: with `held` (the mend after row-level
 * conflicts) only the keys every node holds a row for; then, unless a source node was named
 * (`from`), the keys held by some nodes only that the tombstones decide, each decision in
 * `decided`. None of those when a node's tombstones cannot be read (an older arbiter, a
 * failure): a holder's tombstone unseen would make its row look lost.
 */
export async function withTombstones(
  calls: CheckCalls,
  relation: string,
  observed: Observed,
  held: boolean,
  from: number | undefined,
): Promise<Observed> {
  const seen = held ? heldEverywhere(observed) : observed
  if (from !== undefined) return seen
  const keys = [...observed.confirmed].filter(([, p]) => split(p)).map(([k]) => k)
  if (keys.length === 0 || !observed.commitTs) return seen
  const tombs = new Map<number, Map<string, Tomb>>()
  try {
    const t = calls.timeouts().statement
    for (const node of observed.nodes) {
      const here = new Map<string, Tomb>()
      for (let i = 0; i < keys.length; i += KEYS_PER_CALL) {
        const params = { table: relation, keys: keys.slice(i, i + KEYS_PER_CALL), timeoutMs: t }
        const r = await calls.callRead(node, 'check.tombstones', params, t + 5000)
        for (const x of r.tombstones) here.set(x.k, { ts: x.ts, origin: x.origin })
      }
      tombs.set(node, here)
    }
  } catch {
    return seen
  }
  const confirmed = new Map(seen.confirmed)
  const decided = new Map<string, Decision>()
  for (const k of keys) {
    const p = observed.confirmed.get(k) as Picture
    const d = decideAbsent(k, p, tombs)
    if (!d) continue
    confirmed.set(k, p)
    decided.set(k, d)
  }
  // the answer names what the repair will do with them
  const listed = listKeys(observed.confirmed, undefined, (k) => {
    const d = decided.get(k)
    if (d === undefined) return undefined
    const by = d.kind === 'delete' ? d.tomb.origin : winner(confirmed.get(k) as Picture).node
    return { winner: by, rule: ruleOf(d) }
  })
  return { ...seen, confirmed, decided, report: { ...seen.report, keys: listed } }
}

const KEYS_PER_CALL = 10_000
