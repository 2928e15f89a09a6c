// The decisions behind node-striped sequences: which stride, which first value, when to warn.
import { describe, expect, it, vi } from 'vitest'
import {
  chooseStride,
  firstValue,
  SequenceStriper,
  usedRatio,
} from '../../src/cluster/sequences.js'
import { silentLogger } from '../../src/log.js'
import type { LocalNode } from '../../src/postgres/local.js'

describe('chooseStride', () => {
  it('is 64 while node ids 0..63 have distinct residues', () => {
    expect(chooseStride([0, 1, 2, 3])).toBe(64)
    expect(chooseStride([...Array(64).keys()])).toBe(64)
  })
  it('doubles when the cluster grows past it (a residue taken twice)', () => {
    expect(chooseStride([1, 65])).toBe(128)
    expect(chooseStride([...Array(65).keys()])).toBe(128)
    expect(chooseStride([1, 129, 257])).toBe(512)
  })
  it('never shrinks below a stride in use', () => {
    expect(chooseStride([0, 1], 128)).toBe(128)
    expect(chooseStride([0, 1], 100)).toBe(128)
  })
})

describe('firstValue', () => {
  it('is the first value past the floor in the residue class', () => {
    expect(firstValue(0n, 1n, 64n, 1n)).toBe(1n)
    expect(firstValue(1n, 1n, 64n, 1n)).toBe(65n)
    expect(firstValue(100n, 2n, 64n, 1n)).toBe(130n)
    expect(firstValue(127n, 0n, 64n, 1n)).toBe(128n)
    expect(firstValue(128n, 0n, 64n, 1n)).toBe(192n)
  })
  it('respects the minimum (residue 0 never hands out 0)', () => {
    expect(firstValue(0n, 0n, 64n, 1n)).toBe(64n)
    expect(firstValue(-5n, 3n, 64n, 1n)).toBe(3n)
  })
  it('works past 2^53', () => {
    const floor = 2n ** 60n + 7n
    const v = firstValue(floor, 5n, 64n, 1n)
    expect(v > floor && v % 64n === 5n && v - floor <= 64n).toBe(true)
  })
})

describe('usedRatio', () => {
  it('is the share of the range used', () => {
    const int4 = { min: 1n, max: 2147483647n, start: 1n }
    expect(usedRatio({ ...int4, last: null })).toBe(0)
    expect(usedRatio({ ...int4, last: 1932735283n })).toBeGreaterThanOrEqual(0.9)
    expect(usedRatio({ ...int4, last: 1000n })).toBeLessThan(0.01)
  })
})

describe('SequenceStriper.recheck', () => {
  // the store is a stand-in that counts reads (FakeStore; the real one is exercised by
  // test/integration/sequences.test.ts)
  it('reads the sequences again when the members change or after 5 s, not on every pass', async () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] })
    try {
      let reads = 0
      let nodes = [0, 1, 2]
      const local = {
        sequences: {
          replicatedTables: async () => {
            reads++
            return []
          },
          ownedSequences: async () => [],
        },
      }
      const s = new SequenceStriper({
        local: local as unknown as LocalNode,
        nodeId: 0,
        log: silentLogger(),
        enabled: true,
        nodeIds: () => nodes,
        gather: async () => [],
      })
      await s.recheck()
      await s.recheck()
      await s.recheck()
      expect(reads).toBe(1)
      nodes = [0, 1, 2, 3]
      await s.recheck()
      expect(reads).toBe(2)
      vi.setSystemTime(1_000_000 + 5_000)
      await s.recheck()
      expect(reads).toBe(3)
    } finally {
      vi.useRealTimers()
    }
  })
})
