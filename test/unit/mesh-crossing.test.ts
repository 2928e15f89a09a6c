// Crossing dials (crossing.ts): how long the larger peer id's dial waits, and which connection
// the smaller one refuses.
import { describe, expect, it } from 'vitest'
import { DEFER_MS, deferMs, SECOND_DIAL_MS, yields } from '../../src/mesh/crossing.js'

describe('deferMs', () => {
  it('is DEFER_MS while dials are fast', () => {
    expect(deferMs(0, [])).toBe(DEFER_MS)
    expect(deferMs(40, [20, 60])).toBe(DEFER_MS)
  })

  it('grows with the recent dials and with the oldest dial still in flight', () => {
    expect(deferMs(500, [])).toBe(1500)
    expect(deferMs(500, [100, 2000])).toBe(6000)
  })
})

describe('yields', () => {
  const lo = '12D3KooWA'
  const hi = '12D3KooWB'
  it('refuses only on the smaller id, while its own dial is in flight or its connection young', () => {
    expect(yields(lo, hi, true, undefined)).toBe(true)
    expect(yields(lo, hi, false, 100)).toBe(true)
    expect(yields(hi, lo, true, 100)).toBe(false)
    expect(yields(lo, hi, false, undefined)).toBe(false)
  })

  it('takes the peer connection once its own connection is old (it may be dead there)', () => {
    expect(yields(lo, hi, false, SECOND_DIAL_MS + 1)).toBe(false)
  })
})
