import { describe, expect, it } from 'vitest'
import { copyPlan } from '../../src/cluster/copy-plan.js'

const c = (rows: number, hash = rows ? 'h1' : '') => ({ rows, hash })

describe('copyPlan: rows a joining table holds already', () => {
  it('copies nothing when every node holds the same rows, or none', () => {
    expect(
      copyPlan(
        'demo.t',
        [0, 1, 2].map((node) => ({ node, content: c(0) })),
      ),
    ).toEqual({})
    expect(
      copyPlan(
        'demo.t',
        [0, 1, 2].map((node) => ({ node, content: c(5) })),
      ),
    ).toEqual({})
  })
  it('copies the rows of the nodes that hold them to the empty ones (lowest holder)', () => {
    const plan = copyPlan('demo.t', [
      { node: 2, content: c(10) },
      { node: 0, content: c(0) },
      { node: 1, content: c(10) },
    ])
    expect(plan).toEqual({ copy: { node: 1, rows: 10, hash: 'h1' } })
  })
  it('merges different rows on two nodes (a repair after the commit), saying what each holds', () => {
    const plan = copyPlan('demo.t', [
      { node: 0, content: c(5, 'a') },
      { node: 1, content: c(5, 'b') },
      { node: 2, content: c(0) },
    ])
    expect(plan).toEqual({
      merge:
        'demo.t holds different rows on different nodes (node 0: 5 rows, node 1: 5 rows, node 2: empty)',
    })
  })
  it('a holder with too many rows to hash: copied unverified when every other node is empty', () => {
    const big = { rows: null, hash: '' }
    expect(
      copyPlan('demo.t', [
        { node: 0, content: c(0) },
        { node: 1, content: big },
        { node: 2, content: c(0) },
      ]),
    ).toEqual({ copy: { node: 1, rows: null, hash: '' } })
    expect(
      copyPlan('demo.t', [
        { node: 0, content: c(4) },
        { node: 1, content: big },
        { node: 2, content: c(0) },
      ]),
    ).toEqual({ untold: [1] })
  })
  it('copies nothing when a node did not say (too big to hash in time, another version)', () => {
    expect(copyPlan('demo.t', [{ node: 0, content: c(3) }, { node: 2 }, { node: 1 }])).toEqual({
      untold: [1, 2],
    })
  })
})
