// Which lost slots get healed, and when: the decision alone (the arbiters' end-to-end heal is
// in test/integration/health.test.ts).
import { describe, expect, it } from 'vitest'
import { NO_HEALS, slotsToHeal } from '../../src/cluster/slot-healer.js'
import type { SlotObservation } from '../../src/postgres/health-rules.js'

const slot = (peer: number, walStatus: string | null): SlotObservation => ({
  slot: `trktr_sub_${peer}_0`,
  peer,
  walStatus,
  active: false,
  retainedBytes: 0,
})
const t = { graceMs: 3000, cooldownMs: 120_000 }
const all = () => true

describe('slotsToHeal', () => {
  it('heals a lost slot once it has been lost for the grace, not before', () => {
    const a = slotsToHeal([slot(1, 'lost')], all, NO_HEALS, 1000, t)
    expect(a.heal).toEqual([])
    const b = slotsToHeal([slot(1, 'lost')], all, a.memory, 3999, t)
    expect(b.heal).toEqual([])
    const c = slotsToHeal([slot(1, 'lost')], all, b.memory, 4000, t)
    expect(c.heal).toEqual([{ peer: 1, slot: 'trktr_sub_1_0' }])
  })

  it('leaves reserved, extended and unreserved slots alone', () => {
    const slots = [slot(1, 'reserved'), slot(2, 'extended'), slot(3, 'unreserved'), slot(4, null)]
    const a = slotsToHeal(slots, all, NO_HEALS, 0, t)
    expect(slotsToHeal(slots, all, a.memory, 60_000, t).heal).toEqual([])
  })

  it('waits for the peer to be a live ready member', () => {
    let ready = false
    const a = slotsToHeal([slot(2, 'lost')], () => ready, NO_HEALS, 0, t)
    const b = slotsToHeal([slot(2, 'lost')], () => ready, a.memory, 10_000, t)
    expect(b.heal).toEqual([])
    ready = true
    expect(slotsToHeal([slot(2, 'lost')], () => ready, b.memory, 11_000, t).heal).toHaveLength(1)
  })

  it('asks a peer once per cooldown, and again after it if the slot is still lost', () => {
    const a = slotsToHeal([slot(1, 'lost')], all, NO_HEALS, 0, t)
    const b = slotsToHeal([slot(1, 'lost')], all, a.memory, 5000, t)
    expect(b.heal).toHaveLength(1)
    expect(slotsToHeal([slot(1, 'lost')], all, b.memory, 60_000, t).heal).toEqual([])
    expect(slotsToHeal([slot(1, 'lost')], all, b.memory, 125_000, t).heal).toHaveLength(1)
  })

  it('forgets a slot that is no longer lost: a new loss waits the grace again', () => {
    const a = slotsToHeal([slot(1, 'lost')], all, NO_HEALS, 0, t)
    const b = slotsToHeal([slot(1, 'reserved')], all, a.memory, 1000, t)
    expect(b.memory.lostSince.size).toBe(0)
    const c = slotsToHeal([slot(1, 'lost')], all, b.memory, 2000, t)
    expect(slotsToHeal([slot(1, 'lost')], all, c.memory, 4000, t).heal).toEqual([])
  })
})
