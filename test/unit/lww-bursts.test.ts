// When the lww loop asks for a table's check after its conflicts (src/resolver/lww-engine.ts,
// Bursts): once every table's conflicts are quiet, or when a table's have gone on for long.
import { describe, expect, it } from 'vitest'
import { Bursts, LONG_BURST_MS } from '../../src/resolver/lww-engine.js'

describe('Bursts', () => {
  it('asks for every table with conflicts once all is quiet, each with its last conflict, once', () => {
    const b = new Bursts()
    b.resolved('demo.a', 1000)
    b.resolved('demo.b', 2000)
    b.resolved('demo.a', 3000)
    expect(b.due(4000, false)).toEqual([])
    expect(b.due(20_000, true)).toEqual([
      ['demo.a', 3000],
      ['demo.b', 2000],
    ])
    expect(b.due(21_000, true)).toEqual([])
  })

  it(`asks for a table in conflict a long stretch without a quiet moment (${LONG_BURST_MS / 1000} s; 60 s here), then again after as long`, () => {
    const b = new Bursts(60_000)
    b.resolved('demo.hot', 0)
    b.resolved('demo.later', 30_000)
    for (let t = 1000; t < 60_000; t += 1000) b.resolved('demo.hot', t)
    expect(b.due(59_999, false)).toEqual([])
    // the check must have started after the stretch began to count
    expect(b.due(60_000, false)).toEqual([['demo.hot', 0]])
    expect(b.due(61_000, false)).toEqual([])
    expect(b.due(90_000, false)).toEqual([['demo.later', 30_000]])
    expect(b.due(120_000, false)).toEqual([['demo.hot', 60_000]])
    // quiet at last: each table once more, with its last conflict
    expect(b.due(130_000, true)).toEqual([
      ['demo.hot', 59_000],
      ['demo.later', 30_000],
    ])
  })
})
