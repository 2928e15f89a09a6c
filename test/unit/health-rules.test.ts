// Health reasons from what PostgreSQL says about replication (src/postgres/health-rules.ts):
// lost and unreserved slots at once, disabled or silent subscriptions after their grace.
import { describe, expect, it } from 'vitest'
import {
  EMPTY_MEMORY,
  type HealthObservation,
  healthReasons,
  thresholdsFor,
} from '../../src/postgres/health-rules.js'

const t = thresholdsFor(300)
const obs = (atMs: number, patch: Partial<HealthObservation> = {}): HealthObservation => ({
  atMs,
  slots: [],
  subscriptions: [],
  pendingErrors: 0,
  oldestPending: null,
  ...patch,
})

describe('health rules', () => {
  it('thresholds follow checkIntervalMs, with floors', () => {
    expect(thresholdsFor(300)).toEqual({
      disabledMs: 3000,
      notStreamingMs: 10_000,
      pendingMs: 5000,
    })
    expect(thresholdsFor(5000)).toEqual({
      disabledMs: 15_000,
      notStreamingMs: 50_000,
      pendingMs: 25_000,
    })
  })

  it('a healthy node has no reason', () => {
    const r = healthReasons(
      obs(0, {
        slots: [
          { slot: 'trktr_sub_1_0', peer: 1, walStatus: 'reserved', active: true, retainedBytes: 0 },
        ],
        subscriptions: [{ name: 'trktr_sub_0_1', peer: 1, enabled: true, streaming: true }],
      }),
      EMPTY_MEMORY,
      t,
    )
    expect(r.reasons).toEqual([])
  })

  it('a lost or unreserved slot is a reason at once, naming the slot and the peer', () => {
    const r = healthReasons(
      obs(0, {
        slots: [
          { slot: 'trktr_sub_1_0', peer: 1, walStatus: 'lost', active: false, retainedBytes: 0 },
          {
            slot: 'trktr_sub_2_0',
            peer: 2,
            walStatus: 'unreserved',
            active: false,
            retainedBytes: 123,
          },
          { slot: 'trktr_sub_3_0', peer: 3, walStatus: 'extended', active: true, retainedBytes: 9 },
        ],
      }),
      EMPTY_MEMORY,
      t,
    )
    expect(r.reasons).toHaveLength(2)
    expect(r.reasons[0]).toMatch(/^replication slot trktr_sub_1_0 .*is lost.*node 1 no longer/)
    expect(r.reasons[1]).toMatch(/trktr_sub_2_0 .*unreserved.*123 bytes/)
  })

  it('a disabled subscription is a reason once it stays disabled past its grace', () => {
    const sub = { name: 'trktr_sub_0_1', peer: 1, enabled: false, streaming: false }
    const first = healthReasons(obs(1000, { subscriptions: [sub] }), EMPTY_MEMORY, t)
    expect(first.reasons).toEqual([])
    const early = healthReasons(obs(3999, { subscriptions: [sub] }), first.memory, t)
    expect(early.reasons).toEqual([])
    const late = healthReasons(obs(4000, { subscriptions: [sub] }), early.memory, t)
    expect(late.reasons).toEqual([
      "subscription trktr_sub_0_1 (from node 1) has been disabled for 3 s: node 1's changes do not reach this node",
    ])
    // enabled again: the memory forgets it
    const back = healthReasons(
      obs(5000, { subscriptions: [{ ...sub, enabled: true, streaming: true }] }),
      late.memory,
      t,
    )
    expect(back.reasons).toEqual([])
    expect(back.memory.disabledSince.size).toBe(0)
  })

  it('an enabled subscription without a streaming worker is a reason after its threshold', () => {
    const sub = { name: 'trktr_sub_0_2', peer: 2, enabled: true, streaming: false }
    let m = healthReasons(obs(0, { subscriptions: [sub] }), EMPTY_MEMORY, t)
    // a worker that streams for a moment resets the clock
    m = healthReasons(obs(5000, { subscriptions: [{ ...sub, streaming: true }] }), m.memory, t)
    m = healthReasons(obs(6000, { subscriptions: [sub] }), m.memory, t)
    expect(healthReasons(obs(15_999, { subscriptions: [sub] }), m.memory, t).reasons).toEqual([])
    const r = healthReasons(obs(16_000, { subscriptions: [sub] }), m.memory, t)
    expect(r.reasons).toHaveLength(1)
    expect(r.reasons[0]).toMatch(
      /trktr_sub_0_2 \(from node 2\) is enabled but has not streamed for 10 s/,
    )
  })

  it('apply errors left unresolved are a reason', () => {
    const r = healthReasons(
      obs(0, { pendingErrors: 2, oldestPending: '2026-01-01 00:00:00+00' }),
      EMPTY_MEMORY,
      t,
    )
    expect(r.reasons).toEqual([
      '2 apply errors not resolved (the oldest at 2026-01-01 00:00:00+00): see /v1/cluster/history',
    ])
  })
})
