// The lww loop logs its resolutions as one line at most every SUMMARY_EVERY_MS: on hot rows a
// round runs many times a second (each is in the ledger and the metrics already).
import { describe, expect, it } from 'vitest'
import { Tally } from '../../src/resolver/lww-engine.js'

describe('Tally', () => {
  it('logs the first round at once, then sums the rounds of the next period into one line', () => {
    const t = new Tally(10_000)
    expect(t.take(0)).toBeUndefined() // nothing resolved
    t.add({ recorded: 3, restored: 1 })
    expect(t.take(100)).toEqual({ resolved: 3, restored: 1, rounds: 1 })
    t.add({ recorded: 2, restored: 0 })
    expect(t.take(5_000)).toBeUndefined() // within the period
    t.add({ recorded: 4, restored: 2 })
    expect(t.take(9_000)).toBeUndefined()
    expect(t.take(10_100)).toEqual({ resolved: 6, restored: 2, rounds: 2 })
    expect(t.take(30_000)).toBeUndefined() // nothing since
  })

  it('gives what is left when forced (the loop stops)', () => {
    const t = new Tally(10_000)
    t.add({ recorded: 1, restored: 1 })
    t.take(0)
    t.add({ recorded: 5, restored: 0 })
    expect(t.take(1_000, true)).toEqual({ resolved: 5, restored: 0, rounds: 1 })
    expect(t.take(2_000, true)).toBeUndefined()
  })
})
