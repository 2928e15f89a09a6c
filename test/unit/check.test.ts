// The consistency check's pure decisions (src/cluster/check.ts): differing buckets, how to
// narrow them, differing keys, when a difference is settled, the winner, the fixes.
import { describe, expect, it } from 'vitest'
import {
  chunks,
  differingBuckets,
  differingKeys,
  fixesFor,
  GROUPS_PER_LEVEL,
  isoOf,
  keyReport,
  LIST_ROWS,
  type NodeRow,
  nextStep,
  type Picture,
  samePicture,
  settle,
  type Version,
  verdictOf,
  winner,
} from '../../src/cluster/check.js'
import { heldEverywhere, MEND_RULE } from '../../src/cluster/check-repair.js'
import type { Observed } from '../../src/cluster/check-types.js'

const ans = (pairs: Array<[number, number, string]>) => ({
  rows: pairs.reduce((a, p) => a + p[1], 0),
  buckets: pairs.map((p) => p[0]),
  counts: pairs.map((p) => p[1]),
  hashes: pairs.map((p) => p[2]),
})

const v = (h: string, ts: string | null = '100', origin: number | null = 0): Version => ({
  h,
  ts,
  origin,
})
const pic = (entries: Array<[number, Version | null]>): Picture => new Map(entries)

describe('differingBuckets', () => {
  it('finds buckets whose count or hash differ, and buckets missing on a node', () => {
    const a = ans([
      [1, 10, 'aa'],
      [2, 5, 'bb'],
      [3, 7, 'cc'],
    ])
    const b = ans([
      [1, 10, 'aa'],
      [2, 5, 'bX'],
      [4, 1, 'dd'],
    ])
    const c = ans([
      [1, 10, 'aa'],
      [2, 5, 'bb'],
      [3, 7, 'cc'],
    ])
    expect(differingBuckets([a, b, c])).toEqual([2, 3, 4])
    expect(differingBuckets([a, c])).toEqual([])
  })

  it('a count that differs with the same hash still differs', () => {
    expect(differingBuckets([ans([[9, 1, 'x']]), ans([[9, 2, 'x']])])).toEqual([9])
  })
})

describe('nextStep', () => {
  it('lists when few rows are left in the differing buckets', () => {
    expect(nextStep(12, [1, 2, 3], 1000)).toEqual({ kind: 'list', bits: 12, buckets: [1, 2, 3] })
    // 1M rows, 3 buckets of ~244 rows: 732 rows to list
    expect(nextStep(12, [1, 2, 3], 1_000_000).kind).toBe('list')
  })

  it('narrows by enough bits to leave a few rows per bucket', () => {
    // 1M rows, 900 differing buckets of ~244 rows: 220k rows, too many to list
    const s = nextStep(
      12,
      Array.from({ length: 900 }, (_, i) => i),
      1_000_000,
    )
    expect(s.kind).toBe('refine')
    if (s.kind !== 'refine') return
    expect(s.parentBits).toBe(12)
    // 244 / 2^6 ≈ 4 rows per sub-bucket
    expect(s.bits).toBe(18)
    expect(s.parents).toHaveLength(900)
    expect(s.truncated).toBe(false)
    // after that level, ~1000 buckets of ~4 rows are listed
    expect(
      nextStep(
        18,
        Array.from({ length: 1000 }, (_, i) => i),
        1_000_000,
      ).kind,
    ).toBe('list')
  })

  it('descends into a part of the buckets only when every bucket differs in a huge table', () => {
    const all = Array.from({ length: 4096 }, (_, i) => i)
    const s = nextStep(12, all, 100_000_000)
    expect(s.kind).toBe('refine')
    if (s.kind !== 'refine') return
    expect(s.truncated).toBe(true)
    expect(s.parents.length * 2 ** (s.bits - 12)).toBeLessThanOrEqual(GROUPS_PER_LEVEL)
  })

  it('lists at the deepest level whatever is left', () => {
    expect(nextStep(48, [1], 1e15).kind).toBe('list')
  })

  it('LIST_ROWS bounds what a list step may expect', () => {
    const perBucket = 1_000_000 / 4096
    const n = Math.floor(LIST_ROWS / perBucket)
    expect(
      nextStep(
        12,
        Array.from({ length: n }, (_, i) => i),
        1_000_000,
      ).kind,
    ).toBe('list')
    expect(
      nextStep(
        12,
        Array.from({ length: n + 1 }, (_, i) => i),
        1_000_000,
      ).kind,
    ).toBe('refine')
  })
})

describe('chunks', () => {
  it('splits a list into runs', () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]])
    expect(chunks([], 2)).toEqual([])
  })
})

describe('differingKeys', () => {
  const rows = (list: Array<[string, string]>): NodeRow[] =>
    list.map(([k, h]) => ({ k, h, ts: '1', origin: 0 }))

  it('names keys absent on a node or with another row there', () => {
    const got = differingKeys(
      [0, 1, 2],
      new Map([
        [
          0,
          rows([
            ['{"id": 1}', 'a'],
            ['{"id": 2}', 'b'],
            ['{"id": 3}', 'c'],
          ]),
        ],
        [
          1,
          rows([
            ['{"id": 1}', 'a'],
            ['{"id": 2}', 'B'],
            ['{"id": 4}', 'd'],
          ]),
        ],
        [
          2,
          rows([
            ['{"id": 1}', 'a'],
            ['{"id": 2}', 'b'],
            ['{"id": 3}', 'c'],
          ]),
        ],
      ]),
    )
    expect([...got.keys()].sort()).toEqual(['{"id": 2}', '{"id": 3}', '{"id": 4}'])
    expect(got.get('{"id": 3}')?.get(1)).toBeNull()
    expect(got.get('{"id": 4}')?.get(0)).toBeNull()
    expect(got.get('{"id": 2}')?.get(1)?.h).toBe('B')
  })

  it('with `only`, a key absent everywhere agrees, a key absent on one node differs', () => {
    const got = differingKeys(
      [0, 1],
      new Map([
        [0, rows([['k1', 'a']])],
        [1, rows([])],
      ]),
      ['k1', 'k2'],
    )
    expect([...got.keys()]).toEqual(['k1'])
  })
})

describe('settle', () => {
  const p1 = pic([
    [0, v('a')],
    [1, null],
  ])
  const p2 = pic([
    [0, v('a2', '200')],
    [1, null],
  ])

  it('confirms a difference that held still through a sync', () => {
    const r = settle(new Map([['k', p1]]), new Map([['k', p1]]), true)
    expect([...r.confirmed.keys()]).toEqual(['k'])
    expect(r.pending.size).toBe(0)
  })

  it('drops a difference that was in flight, and looks again at one that moved', () => {
    const r = settle(
      new Map([
        ['gone', p1],
        ['moved', p1],
      ]),
      new Map([['moved', p2]]),
      true,
    )
    expect(r.confirmed.size).toBe(0)
    expect([...r.pending.keys()]).toEqual(['moved'])
    expect(r.pending.get('moved')).toBe(p2)
  })

  it('confirms nothing when the sync did not complete (replication behind)', () => {
    const r = settle(new Map([['k', p1]]), new Map([['k', p1]]), false)
    expect(r.confirmed.size).toBe(0)
    expect(r.pending.size).toBe(1)
  })

  it('samePicture compares hash and commit time per node, absence included', () => {
    expect(samePicture(p1, p1)).toBe(true)
    expect(samePicture(p1, p2)).toBe(false)
    expect(
      samePicture(
        pic([
          [0, v('a', '1')],
          [1, null],
        ]),
        pic([
          [0, v('a', '2')],
          [1, null],
        ]),
      ),
    ).toBe(false)
    expect(
      samePicture(
        pic([[0, null]]),
        pic([
          [0, null],
          [1, null],
        ]),
      ),
    ).toBe(false)
  })
})

describe('winner (the row-level resolver rule)', () => {
  it('the latest origin commit wins', () => {
    const p = pic([
      [0, v('old', '100', 0)],
      [1, v('new', '200', 1)],
      [2, v('old', '100', 0)],
    ])
    expect(winner(p)).toEqual({ node: 1, version: v('new', '200', 1) })
  })

  it('on a tie of commit times, the higher origin nodeId wins, then the higher holder', () => {
    const tie = pic([
      [0, v('x', '100', 2)],
      [1, v('y', '100', 1)],
    ])
    expect(winner(tie).node).toBe(0)
    const same = pic([
      [0, v('x', '100', null)],
      [2, v('y', '100', null)],
    ])
    expect(winner(same).node).toBe(2)
    // as trktr.newer: an unknown origin is the lowest, whichever node holds it
    const unknown = pic([
      [0, v('x', '100', 0)],
      [2, v('y', '100', null)],
    ])
    expect(winner(unknown).node).toBe(0)
  })

  it('any version wins over an absence; an unknown commit time loses to a known one', () => {
    expect(
      winner(
        pic([
          [0, null],
          [1, v('a', null, null)],
          [2, null],
        ]),
      ).node,
    ).toBe(1)
    expect(
      winner(
        pic([
          [0, v('a', null, 0)],
          [1, v('b', '1', 1)],
        ]),
      ).node,
    ).toBe(1)
  })

  it('a chosen node wins, its absence too (a delete)', () => {
    const p = pic([
      [0, null],
      [1, v('b', '500', 1)],
    ])
    expect(winner(p, 0)).toEqual({ node: 0, version: null })
    expect(winner(p, 1).version?.h).toBe('b')
  })
})

describe('fixesFor', () => {
  it('every node without the winning version gets a compare-and-set on what it holds', () => {
    const p = pic([
      [0, v('w', '9', 0)],
      [1, v('o', '1', 1)],
      [2, null],
      [3, v('w', '9', 0)],
    ])
    expect(fixesFor(p, winner(p))).toEqual([
      { node: 1, expect: 'o', remove: false },
      { node: 2, expect: null, remove: false },
    ])
  })

  it('an absent winner deletes where the row is', () => {
    const p = pic([
      [0, null],
      [1, v('o')],
    ])
    expect(fixesFor(p, winner(p, 0))).toEqual([{ node: 1, expect: 'o', remove: true }])
  })
})

describe('reports', () => {
  it('verdicts', () => {
    expect(verdictOf(0, 0)).toBe('consistent')
    expect(verdictOf(2, 5)).toBe('differs')
    expect(verdictOf(0, 1)).toBe('unsettled')
  })

  it('a key shows as its values, with each node version and the winner', () => {
    const p = pic([
      [1, null],
      [0, v('h', '1700000000123456', 2)],
    ])
    expect(keyReport('{"id": 5, "k": "x"}', p)).toEqual({
      key: { id: 5, k: 'x' },
      nodes: {
        '0': { hash: 'h', committed: '2023-11-14T22:13:20.123456Z', origin: 2 },
        '1': null,
      },
      winner: 0,
    })
    expect(isoOf(null)).toBeNull()
  })
})

describe('heldEverywhere (the mend after row-level conflicts)', () => {
  it('keeps only the keys every node asked holds a row for', () => {
    const confirmed = new Map<string, Picture>([
      [
        '[1]',
        new Map([
          [0, v('a', '100')],
          [1, v('b', '200')],
          [2, v('a', '100')],
        ]),
      ],
      [
        '[2]',
        new Map([
          [0, v('a')],
          [1, null],
          [2, v('a')],
        ]),
      ],
      [
        '[3]',
        new Map([
          [0, v('a')],
          [2, v('b')],
        ]),
      ], // node 1 said nothing of it
    ])
    const seen = {
      report: {} as Observed['report'],
      confirmed,
      nodes: [0, 1, 2],
      commitTs: true,
    }
    const held = heldEverywhere(seen)
    expect([...held.confirmed.keys()]).toEqual(['[1]'])
    expect(seen.confirmed.size).toBe(3) // the observation itself is left as it was
    expect(MEND_RULE).toMatch(/^last writer/)
  })
})
