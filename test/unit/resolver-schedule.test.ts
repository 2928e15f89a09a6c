// When the resolver looks again: after acting, at once (its effect confirmed); while apply
// workers deadlock (a deadlock acted on in the last HOT_MS), every HOT_EVERY_MS on the beat;
// otherwise on the arbiter's 1 s beat.
import { describe, expect, it } from 'vitest'
import { HOT_EVERY_MS, HOT_MS, nextCycleInMs } from '../../src/resolver/resolver.js'

describe('nextCycleInMs', () => {
  const intervalMs = 1000
  it('looks again 150 ms after a cycle that acted', () => {
    expect(nextCycleInMs({ now: 10_020, acted: true, hotUntilMs: 0, intervalMs })).toBe(150)
  })

  it('runs on the next whole second otherwise', () => {
    expect(nextCycleInMs({ now: 10_020, acted: false, hotUntilMs: 0, intervalMs })).toBe(980)
  })

  it('runs on the next quarter second while deadlocks come, and on the second after', () => {
    const hotUntilMs = 10_000 + HOT_MS
    expect(HOT_EVERY_MS).toBe(250)
    expect(nextCycleInMs({ now: 10_020, acted: false, hotUntilMs, intervalMs })).toBe(230)
    expect(nextCycleInMs({ now: hotUntilMs + 20, acted: false, hotUntilMs, intervalMs })).toBe(980)
  })

  it('never waits longer than the configured interval', () => {
    expect(nextCycleInMs({ now: 0, acted: false, hotUntilMs: 5000, intervalMs: 100 })).toBe(100)
  })
})
