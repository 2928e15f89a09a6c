// How long the liveness probe lets a peer stay silent before it cuts the connection
// (src/mesh/liveness.ts, Delay): DEAD_AFTER_MS for a peer that answers at once, longer for one
// whose answers have been coming late (a busy process, not a gone one), never past the cap.
import { describe, expect, it } from 'vitest'
import { DEAD_AFTER_MS, Delay } from '../../src/mesh/liveness.js'

describe('liveness deadline', () => {
  it('is DEAD_AFTER_MS before any answer, and for a peer that answers in a few ms', () => {
    const d = new Delay()
    expect(d.deadlineMs()).toBe(DEAD_AFTER_MS)
    for (let i = 0; i < 50; i++) d.sample(2)
    expect(d.deadlineMs()).toBe(DEAD_AFTER_MS)
  })

  it('grows for a peer whose answers came later and later, and shrinks back when it recovers', () => {
    const d = new Delay()
    for (let ms = 100; ms <= 1200; ms += 100) d.sample(ms)
    const slow = d.deadlineMs()
    expect(slow).toBeGreaterThan(1.2 * DEAD_AFTER_MS)
    for (let i = 0; i < 60; i++) d.sample(3)
    expect(d.deadlineMs()).toBe(DEAD_AFTER_MS)
  })

  it('one late answer after many quick ones does not stretch it past what the history says', () => {
    const d = new Delay()
    for (let i = 0; i < 50; i++) d.sample(2)
    d.sample(900)
    // a frozen peer is still cut within about twice the base, not at the cap
    expect(d.deadlineMs()).toBeLessThan(2 * DEAD_AFTER_MS)
  })

  it('never waits more than eight times the base', () => {
    const d = new Delay()
    for (let i = 0; i < 20; i++) d.sample(60_000)
    expect(d.deadlineMs()).toBe(8 * DEAD_AFTER_MS)
  })
})
