// The redial schedule, without a network: backoff 250 ms doubling to 5 s, reset only after a
// connection that lasted.
import { describe, expect, it } from 'vitest'
import {
  type Backoff,
  due,
  failed,
  REDIAL_MAX_DELAY_MS,
  REDIAL_MIN_DELAY_MS,
  REDIAL_STABLE_MS,
} from '../../src/mesh/redial.js'

const fresh = (): Backoff => ({
  delay: REDIAL_MIN_DELAY_MS,
  nextAt: 0,
  inFlight: false,
  upSince: undefined,
  deferMs: 0,
})

describe('redial schedule', () => {
  it('dials a new target at once, then backs off 250 ms doubling to 5 s', () => {
    const b = fresh()
    expect(due(b, false, 1000)).toBe(true)
    const waits: number[] = []
    let now = 1000
    for (let i = 0; i < 8; i++) {
      failed(b, now)
      waits.push(b.nextAt - now)
      expect(due(b, false, b.nextAt - 1)).toBe(false)
      now = b.nextAt
      expect(due(b, false, now)).toBe(true)
    }
    expect(waits).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
    expect(REDIAL_MAX_DELAY_MS).toBe(5000)
  })

  it('never dials a connected target or one with a dial in flight', () => {
    const b = fresh()
    expect(due(b, true, 0)).toBe(false)
    const c = { ...fresh(), inFlight: true }
    expect(due(c, false, 0)).toBe(false)
  })

  it('resets the backoff once a connection has lasted, and redials at once when it drops', () => {
    const b = fresh()
    for (let i = 0; i < 5; i++) failed(b, 0)
    expect(b.delay).toBe(REDIAL_MAX_DELAY_MS)
    expect(due(b, true, 10_000)).toBe(false)
    expect(due(b, true, 10_000 + REDIAL_STABLE_MS)).toBe(false)
    expect(b.delay).toBe(REDIAL_MIN_DELAY_MS)
    expect(due(b, false, 20_000)).toBe(true)
  })

  it('lets the peer with the smaller id redial first after a drop', () => {
    const b = { ...fresh(), deferMs: 1000 }
    expect(due(b, true, 0)).toBe(false)
    expect(due(b, false, REDIAL_STABLE_MS)).toBe(false)
    expect(due(b, false, REDIAL_STABLE_MS + 1000)).toBe(true)
  })

  it('keeps backing off when connections drop right after opening (a peer that refuses us)', () => {
    const b = fresh()
    let now = 0
    for (let i = 0; i < 6; i++) {
      expect(due(b, false, now)).toBe(true)
      // the dial "succeeds", then the remote closes it 10 ms later
      b.upSince = now
      expect(due(b, false, now + 10)).toBe(false)
      now = b.nextAt
    }
    expect(b.delay).toBe(REDIAL_MAX_DELAY_MS)
  })
})
