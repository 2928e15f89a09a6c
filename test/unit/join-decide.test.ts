// Issue 12: what a node about to be ready does — be ready, copy the cluster's data, or refuse.
import { describe, expect, it } from 'vitest'
import { decideJoin, type JoinFacts } from '../../src/cluster/join-decide.js'

const fresh: JoinFacts = {
  mode: 'empty-only',
  marker: undefined,
  subscriptions: 0,
  readyPeers: 2,
  tables: 3,
  occupied: [],
}

describe('decideJoin', () => {
  it('copies into empty tables by default', () => {
    expect(decideJoin(fresh)).toEqual({ kind: 'copy', why: 'empty tables' })
  })

  it('refuses tables that hold rows, naming each with its count', () => {
    const d = decideJoin({
      ...fresh,
      occupied: [
        { table: 'demo.a', rows: 12 },
        { table: 'demo.b', rows: 1 },
      ],
    })
    expect(d.kind).toBe('refuse')
    expect(d.kind === 'refuse' && d.error).toMatch(/demo\.a holds 12 rows, demo\.b holds 1 rows/)
    expect(d.kind === 'refuse' && d.error).toMatch(/"copy".*"no-copy"/)
  })

  it('replaces rows with join = "copy", keeps them with join = "no-copy"', () => {
    const occupied = [{ table: 'demo.a', rows: 12 }]
    expect(decideJoin({ ...fresh, mode: 'copy', occupied }).kind).toBe('copy')
    expect(decideJoin({ ...fresh, mode: 'no-copy', occupied }).kind).toBe('ready')
  })

  it('starts an interrupted copy over, whatever the tables hold', () => {
    const d = decideJoin({
      ...fresh,
      marker: { state: 'copying', donor: 1 },
      occupied: [{ table: 'demo.a', rows: 5 }],
    })
    expect(d).toEqual({ kind: 'copy', why: 'an interrupted copy starts over' })
  })

  it('a member before, a founder, or a cluster without tables: ready without a copy', () => {
    expect(decideJoin({ ...fresh, marker: { state: 'done', donor: 0 } }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, subscriptions: 2 }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, readyPeers: 0 }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, tables: 0 }).kind).toBe('ready')
  })
})
