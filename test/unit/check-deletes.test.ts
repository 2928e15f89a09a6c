// The tombstones' decision for a key some nodes hold a row for and others do not
// (src/cluster/check-deletes.ts): a DELETE the holders never applied wins; a row written after
// a DELETE every holder applied wins; without a tombstone nothing is decided.
import { describe, expect, it } from 'vitest'
import type { Picture, Version } from '../../src/cluster/check.js'
import { CheckCalls, type CheckPort } from '../../src/cluster/check-calls.js'
import {
  decideAbsent,
  type Tomb,
  type Tombs,
  withTombstones,
} from '../../src/cluster/check-deletes.js'
import { applyRepair, DELETE_RULE, MEND_RULE } from '../../src/cluster/check-repair.js'
import type { Observed } from '../../src/cluster/check-types.js'
import { silentLogger } from '../../src/log.js'

const K = '{"id":5}'
const v = (ts: string, origin: number): Version => ({ h: `h${ts}`, ts, origin })
const pic = (entries: Array<[number, Version | null]>): Picture => new Map(entries)
const tombs = (entries: Array<[number, Tomb]>): Tombs =>
  new Map(entries.map(([node, t]) => [node, new Map([[K, t]])]))

describe('decideAbsent', () => {
  it('a DELETE the node holding the row never applied wins (PostgreSQL 17 skipped it there)', () => {
    // node 0 deleted at 100; node 1 kept the row and updated it at 150 (its update was skipped
    // where the row was gone); node 2 applied the delete
    const p = pic([
      [0, null],
      [1, v('150', 1)],
      [2, null],
    ])
    const d = decideAbsent(
      K,
      p,
      tombs([
        [0, { ts: '100', origin: 0 }],
        [2, { ts: '100', origin: 0 }],
      ]),
    )
    expect(d).toEqual({ kind: 'delete', tomb: { ts: '100', origin: 0 } })
  })

  it('a row written after a DELETE its holders applied wins over a node that applied the DELETE last', () => {
    // node 0 deleted at 100; node 1 wrote the key again at 200 after applying it; node 2 got
    // the row first and the delete last
    const t = { ts: '100', origin: 0 }
    const p = pic([
      [0, v('200', 1)],
      [1, v('200', 1)],
      [2, null],
    ])
    expect(
      decideAbsent(
        K,
        p,
        tombs([
          [0, t],
          [1, t],
          [2, t],
        ]),
      ),
    ).toEqual({ kind: 'row' })
  })

  it('a holder that applied only an older DELETE did not see the newest: the newest wins', () => {
    const p = pic([
      [0, null],
      [1, v('300', 1)],
    ])
    const d = decideAbsent(
      K,
      p,
      tombs([
        [0, { ts: '400', origin: 0 }],
        [1, { ts: '100', origin: 2 }],
      ]),
    )
    expect(d).toEqual({ kind: 'delete', tomb: { ts: '400', origin: 0 } })
  })

  it('a row older than the DELETE its holder applied loses to it (a concurrent insert arriving late)', () => {
    const t = { ts: '500', origin: 0 }
    const p = pic([
      [0, null],
      [1, v('450', 2)],
    ])
    expect(
      decideAbsent(
        K,
        p,
        tombs([
          [0, t],
          [1, t],
        ]),
      ),
    ).toEqual({ kind: 'delete', tomb: t })
  })

  it('on equal commit times the higher node wins, between a row and a DELETE as between rows', () => {
    const t = { ts: '500', origin: 1 }
    const both = (origin: number) =>
      decideAbsent(
        K,
        pic([
          [0, null],
          [1, v('500', origin)],
        ]),
        tombs([
          [0, t],
          [1, t],
        ]),
      )?.kind
    expect(both(2)).toBe('row')
    expect(both(0)).toBe('delete')
  })

  it('decides nothing without a tombstone, or where every node holds the row or none does', () => {
    expect(
      decideAbsent(
        K,
        pic([
          [0, null],
          [1, v('100', 1)],
        ]),
        new Map(),
      ),
    ).toBeUndefined()
    const t = tombs([[0, { ts: '100', origin: 0 }]])
    expect(
      decideAbsent(
        K,
        pic([
          [0, v('50', 0)],
          [1, v('60', 1)],
        ]),
        t,
      ),
    ).toBeUndefined()
    expect(
      decideAbsent(
        K,
        pic([
          [0, null],
          [1, null],
        ]),
        t,
      ),
    ).toBeUndefined()
  })
})

/**
 * Scripted members (as check-kept.test.ts's): tombstones by node, the repair items each node is
 * sent recorded; the real path is lww.test.ts on real PostgreSQL and arbiters.
 */
function members(tombstones: Map<number, Array<{ k: string; ts: string; origin: number }>>) {
  const sent = new Map<number, Array<Record<string, unknown>>>()
  const port: CheckPort = {
    participants: () => ({ nodes: [0, 1, 2], missing: [] }),
    call: async (node, method, params) => {
      const p = params as Record<string, unknown>
      if (method === 'check.tombstones') {
        const keys = new Set(p.keys as string[])
        return { tombstones: (tombstones.get(node) ?? []).filter((t) => keys.has(t.k)) }
      }
      if (method === 'check.images') {
        const keys = p.keys as string[]
        return {
          images: keys.map((key) => ({ k: key, row: '{}', h: 'h200', ts: '200' })),
          tooLarge: [],
          more: [],
        }
      }
      if (method === 'check.repair') {
        const items = p.items as Array<Record<string, unknown>>
        sent.set(node, items)
        return {
          results: items.map((i) => ({ k: i.k, outcome: 'repaired', action: 'delete' })),
        }
      }
      throw new Error(`unexpected ${method}`)
    },
    broadcast: async () => {},
    tables: async () => ['demo.t'],
    isLeader: () => false,
  }
  const calls = new CheckCalls({
    port,
    log: silentLogger(),
    stopping: () => new AbortController().signal,
  })
  return { port, calls, sent }
}

const observed = (confirmed: Map<string, Picture>): Observed => ({
  report: { check_id: 'c1' } as Observed['report'],
  confirmed,
  nodes: [0, 1, 2],
  commitTs: true,
})

describe('the mend of keys some nodes lack: tombstones to repair writes', () => {
  it("a DELETE that wins is written where the row is, under the delete's node and time, with its rule", async () => {
    const A = '{"id": 1}'
    const B = '{"id": 2}'
    const seen = observed(
      new Map([
        // node 1 never applied node 0's DELETE (tombstone on node 2)
        [
          A,
          pic([
            [0, null],
            [1, v('150', 1)],
            [2, null],
          ]),
        ],
        // every node holds it, in different versions: the mend's other case
        [
          B,
          pic([
            [0, v('100', 0)],
            [1, v('200', 1)],
            [2, v('200', 1)],
          ]),
        ],
      ]),
    )
    const m = members(new Map([[2, [{ k: A, ts: '100', origin: 0 }]]]))
    const decided = await withTombstones(m.calls, 'demo.t', seen, true, undefined)
    expect([...decided.confirmed.keys()].sort()).toEqual([A, B])
    expect(decided.decided?.get(A)).toEqual({ kind: 'delete', tomb: { ts: '100', origin: 0 } })
    await applyRepair(
      { calls: m.calls, port: m.port, nodeId: 0 },
      'demo.t',
      decided,
      undefined,
      MEND_RULE,
    )
    // the check's answer says the same: node 0's DELETE wins key A (not node 1, which holds it)
    const listed = decided.report.keys.map((k) => [k.key, k.winner, k.rule])
    expect(listed).toEqual([
      [{ id: 1 }, 0, DELETE_RULE],
      [{ id: 2 }, 2, undefined], // the newest version, held by nodes 1 and 2: the higher
    ])
    const toNode1 = m.sent.get(1) ?? []
    expect(toNode1).toEqual([
      { k: A, expect: 'h150', image: null, ts: '100', winner: 0, rule: DELETE_RULE },
    ])
    expect(m.sent.get(0)).toEqual([{ k: B, expect: 'h100', image: '{}', ts: '200', winner: 1 }])
  })

  it('named a source node (from), or a node cannot answer: the tombstones decide nothing', async () => {
    const A = '{"id": 1}'
    const seen = observed(
      new Map([
        [
          A,
          pic([
            [0, null],
            [1, v('150', 1)],
            [2, null],
          ]),
        ],
      ]),
    )
    const m = members(new Map([[2, [{ k: A, ts: '100', origin: 0 }]]]))
    expect((await withTombstones(m.calls, 'demo.t', seen, false, 1)).decided).toBeUndefined()
    const failing = members(new Map())
    const port = {
      ...failing.port,
      call: async () => {
        throw Object.assign(new Error('unknown method'), { code: 'ERR_RPC_ANSWER' })
      },
    }
    const calls = new CheckCalls({
      port,
      log: silentLogger(),
      stopping: () => new AbortController().signal,
    })
    const held = await withTombstones(calls, 'demo.t', seen, true, undefined)
    expect(held.confirmed.size).toBe(0)
    expect(held.decided).toBeUndefined()
  })
})
