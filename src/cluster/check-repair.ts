// A repair's writes: each settled differing key's winning row fetched from the node that holds
// it, then written (compare-and-set) on every node that differs. What moved since the check is
// left to the next pass.
import type { RepairItem, RepairResult } from '../postgres/repair-store.js'
import { batches, fixesFor, winner } from './check.js'
import type { CheckCalls, CheckPort } from './check-calls.js'
import type { Decision } from './check-deletes.js'
import { IMAGE_BYTES_PER_CALL } from './check-node.js'
import type { Observed, RepairAnswer } from './check-types.js'
import { resultOf } from './rpc-results.js'

const IMAGE_KEYS_PER_CALL = 1000

/** the rule of the mend after row-level conflicts (check-after.ts), as the repairs ledger says it */
export const MEND_RULE = 'last writer, after row-level conflicts (every node held the row)'
/** the rules of keys some nodes lacked, decided by the tombstones (check-deletes.ts) */
export const DELETE_RULE =
  'last writer: a DELETE the nodes holding the row never applied (tombstones)'
export const AFTER_DELETE_RULE =
  'last writer: the row, written after a DELETE that every node lacking it applied (tombstones)'

/** The rule of a key the tombstones decided (the repair's ledger and the check's answer). */
export const ruleOf = (d: Decision): string =>
  d.kind === 'delete' ? DELETE_RULE : AFTER_DELETE_RULE

/** What a check observed, narrowed to the keys every node it asked holds a row for. */
export function heldEverywhere(seen: Observed): Observed {
  const confirmed = new Map(
    [...seen.confirmed].filter(([, p]) => seen.nodes.every((n) => (p.get(n) ?? null) !== null)),
  )
  return { ...seen, confirmed }
}

/** Write the winners: fetch each winning row from its node, then CAS-write it elsewhere. */
export async function applyRepair(
  ctx: { calls: CheckCalls; port: CheckPort; nodeId: number },
  relation: string,
  seen: Observed,
  from: number | undefined,
  rule: string,
): Promise<{
  repaired: number
  writes: number
  changed: unknown[]
  failed: RepairAnswer['failed']
}> {
  const t = ctx.calls.timeouts()
  const checkId = seen.report.check_id
  const plans = [...seen.confirmed].map(([k, p]) => {
    const d = seen.decided?.get(k)
    const del = d?.kind === 'delete' ? d.tomb : undefined
    // a DELETE the tombstones say wins: credited to its node and time, as the row-level
    // resolution credits a delete
    const win = del ? { node: del.origin, version: null } : winner(p, from)
    const why = d === undefined ? undefined : ruleOf(d)
    return { k, win, fixes: fixesFor(p, win), ts: del?.ts, why }
  })
  // the winning rows, asked of the nodes that hold them
  const images = new Map<string, { row: string; h: string; ts: string | null }>()
  const unavailable = new Map<string, string>()
  const byWinner = new Map<number, string[]>()
  for (const p of plans) {
    if (p.win.version === null || p.fixes.length === 0) continue
    byWinner.set(p.win.node, [...(byWinner.get(p.win.node) ?? []), p.k])
  }
  for (const [node, keys] of byWinner) {
    let left = keys
    while (left.length > 0) {
      const ask = left.slice(0, IMAGE_KEYS_PER_CALL)
      const r = await ctx.calls.callRead(
        node,
        'check.images',
        { table: relation, keys: ask, timeoutMs: t.statement },
        t.statement + 5000,
      )
      for (const im of r.images) images.set(im.k, im)
      for (const k of r.tooLarge)
        unavailable.set(k, `the row on node ${node} is too large to send over the mesh`)
      const more = new Set(r.more)
      left = [...left.slice(IMAGE_KEYS_PER_CALL), ...ask.filter((k) => more.has(k))]
      if (r.images.length === 0 && r.more.length > 0) break
    }
  }
  const perNode = new Map<number, RepairItem[]>()
  const changed = new Set<string>()
  const failed: RepairAnswer['failed'] = []
  const notDone = new Set<string>()
  for (const p of plans) {
    const v = p.win.version
    let image: string | null = null
    if (v !== null) {
      const im = images.get(p.k)
      if (!im || im.h !== v.h) {
        // the winning row moved (or went) since the check: leave the key to a later check
        if (unavailable.has(p.k))
          failed.push({
            key: parse(p.k),
            node: p.win.node,
            error: unavailable.get(p.k) as string,
          })
        else changed.add(p.k)
        notDone.add(p.k)
        continue
      }
      image = im.row
    }
    for (const f of p.fixes) {
      const items = perNode.get(f.node) ?? []
      items.push({
        k: p.k,
        expect: f.expect,
        image: f.remove ? null : image,
        ts: v?.ts ?? p.ts ?? null,
        // credited to the node that wrote the version (as the row-level resolver credits it),
        // so the repaired row compares the same way as the winner's own copy
        winner: v?.origin ?? p.win.node,
        ...(p.why === undefined ? {} : { rule: p.why }),
      })
      perNode.set(f.node, items)
    }
  }
  let writes = 0
  const results: Array<RepairResult & { node: number }> = []
  await Promise.all(
    [...perNode].map(async ([node, items]) => {
      for (const batch of byBytes(items, IMAGE_BYTES_PER_CALL)) {
        const params = {
          table: relation,
          items: batch,
          checkId,
          coordinator: ctx.nodeId,
          rule,
          timeoutMs: t.statement,
        }
        let r: { results: RepairResult[] }
        try {
          r = resultOf(
            'check.repair',
            await ctx.port.call(node, 'check.repair', params, t.statement + 5000),
          )
        } catch (err) {
          // not asked again: a write may have happened; the check after says what is left
          for (const it of batch)
            results.push({
              k: it.k,
              outcome: 'failed',
              action: 'none',
              node,
              error: (err as Error).message,
            })
          continue
        }
        for (const x of r.results) results.push({ ...x, node })
      }
    }),
  )
  for (const r of results) {
    if (r.outcome === 'repaired') writes++
    else if (r.outcome === 'changed') {
      changed.add(r.k)
      notDone.add(r.k)
    } else if (r.outcome === 'failed') {
      failed.push({ key: parse(r.k), node: r.node, error: r.error ?? 'failed' })
      notDone.add(r.k)
    }
  }
  const repaired = plans.filter((p) => p.fixes.length > 0 && !notDone.has(p.k)).length
  return { repaired, writes, changed: [...changed].map(parse), failed }
}

function parse(k: string): unknown {
  try {
    return JSON.parse(k)
  } catch {
    return k
  }
}

/** Batches of items whose JSON stays under `max` bytes (at least one item each). */
function byBytes(items: RepairItem[], max: number): RepairItem[][] {
  return batches(items, (it) => Buffer.byteLength(JSON.stringify(it)), max)
}
