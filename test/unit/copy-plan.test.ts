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
  it('refuses different rows on two nodes, naming what each holds', () => {
    const plan = copyPlan('demo.t', [
      { node: 0, content: c(5, 'a') },
      { node: 1, content: c(5, 'b') },
      { node: 2, content: c(0) },
    ])
    expect('refuse' in plan && plan.refuse).toBe(
      'demo.t holds different rows on different nodes (node 0: 5 rows, node 1: 5 rows, node 2: empty): empty it on every node but one (its rows are then copied to the others), or make the nodes hold the same rows',
    )
  })
  it('copies nothing when a node did not say (a member of another version)', () => {
    expect(copyPlan('demo.t', [{ node: 0, content: c(3) }, { node: 1 }])).toEqual({})
  })
})
