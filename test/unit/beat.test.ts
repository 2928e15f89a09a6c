import { afterEach, describe, expect, it, vi } from 'vitest'
import { nextBeat, onBeat } from '../../src/beat.js'

describe('onBeat', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('runs at the multiples of its period, so loops of dividing periods run together', () => {
    vi.useFakeTimers({ now: 1_000_130 })
    const a: number[] = []
    const b: number[] = []
    const beats = [onBeat(250, () => a.push(Date.now())), onBeat(1000, () => b.push(Date.now()))]
    vi.advanceTimersByTime(2000)
    for (const x of beats) x.stop()
    expect(a).toEqual([
      1_000_250, 1_000_500, 1_000_750, 1_001_000, 1_001_250, 1_001_500, 1_001_750, 1_002_000,
    ])
    expect(b).toEqual([1_001_000, 1_002_000])
    vi.advanceTimersByTime(1000)
    expect(a).toHaveLength(8) // stopped
  })

  it('a timer a millisecond early or late keeps the beat: no double fire, no skipped beat', () => {
    expect(nextBeat(130, 250, true)).toBe(250)
    expect(nextBeat(250, 250, true)).toBe(500)
    expect(nextBeat(999, 1000, false)).toBe(2000) // early
    expect(nextBeat(1003, 1000, false)).toBe(2000) // late
    expect(nextBeat(1000, 1000, false)).toBe(2000)
  })
})
