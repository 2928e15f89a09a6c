// The tombstones' decision for a key some nodes hold a row for and others do not
// (src/cluster/check-deletes.ts): a DELETE the holders never applied wins; a row written after
// a DELETE every holder applied wins; without a tombstone nothing is decided.
import { describe, expect, it } from 'vitest'
import type { Picture, Version } from '../../src/cluster/check.js'
import { decideAbsent, type Tomb, type Tombs } from '../../src/cluster/check-deletes.js'

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
