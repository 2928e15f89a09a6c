// Why a table cannot join the replicaset here, from its catalog row as a member's prepare reads
// it in the same round trip as the proposal's facts (cluster-state.ts prepareFacts): pure.
import { describe, expect, it } from 'vitest'
import { problemsOf, type TableInfoRow } from '../../src/postgres/replicaset.js'

const rel = { schema: 'demo', table: 'T"x' }
const row: TableInfoRow = {
  owner: 'traktor',
  owned: true,
  kind: 'r',
  persistence: 'p',
  usage: true,
  pk: true,
  columns: ['id:integer', 'v:text'],
}

describe('a table as a member reads it at prepare', () => {
  it('can join when it exists, is ours, has a key and the coordinator columns', () => {
    expect(problemsOf(rel, row, 'traktor', { columns: row.columns, from: 1 })).toEqual([])
  })

  it('is refused, named exactly, when missing, not a table, keyless, unlogged or not ours', () => {
    expect(problemsOf(rel, null, 'traktor')).toEqual(['table demo."T""x" does not exist'])
    expect(problemsOf(rel, { ...row, kind: 'v' }, 'traktor')).toEqual([
      'demo."T""x" is not a table',
    ])
    const bad = { ...row, pk: false, persistence: 'u', owned: false, owner: 'alice' }
    const why = problemsOf(rel, bad, 'traktor')
    expect(why).toHaveLength(3)
    expect(why.join('\n')).toMatch(/owned by alice, not by the arbiter role traktor/)
    expect(why.join('\n')).toMatch(/has no primary key/)
    expect(why.join('\n')).toMatch(/UNLOGGED/)
  })

  it("is refused when its columns differ from the coordinator's", () => {
    const expected = { columns: ['id:integer', 'v:text', 'w:int'], from: 2 }
    expect(problemsOf(rel, row, 'traktor', expected)).toEqual([
      'table demo."T""x" differs: here (id:integer, v:text), on node 2 (id:integer, v:text, w:int)',
    ])
  })
})
