import { describe, expect, it } from 'vitest'
import { LIST_ROWS } from '../../src/cluster/check.js'
import { listChunks } from '../../src/cluster/check-narrow.js'

describe('listChunks: the rows of the differing buckets, asked in bounded requests', () => {
  it('keeps each request near LIST_ROWS rows by the largest node count of each bucket', () => {
    const diff = [...Array(10).keys()]
    const a = { rows: 0, buckets: diff, counts: diff.map(() => LIST_ROWS / 4), hashes: [] }
    const b = { rows: 0, buckets: [3], counts: [LIST_ROWS], hashes: [] }
    const parts = listChunks(diff, [a, b])
    expect(parts).toEqual([[0, 1, 2], [3], [4, 5, 6, 7], [8, 9]])
  })
  it('asks for all of them at once when they are few', () => {
    expect(listChunks([5, 9], [{ rows: 2, buckets: [5, 9], counts: [1, 1], hashes: [] }])).toEqual([
      [5, 9],
    ])
  })
})
