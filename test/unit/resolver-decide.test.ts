import { describe, expect, it } from 'vitest'
import { acted, BACKOFF_MIN_MS, decide, newDecideState } from '../../src/resolver/decide.js'
import type { ApplyFailure } from '../../src/resolver/failures.js'

const sub = (name: string, enabled = false) => ({ name, oid: 1, enabled })
const failure = (sqlState: string, extra: Partial<ApplyFailure> = {}): ApplyFailure => ({
  id: `t|1|${sqlState}`,
  at: '2026-11-29 04:23:42.740 UTC',
  pid: 1,
  sqlState,
  message: 'm',
  ...extra,
})

describe('decide', () => {
  it('skips a conflict with a finish LSN under strategy skip', () => {
    const f = failure('23505', { finishLsn: '0/18FD018' })
    const a = decide([sub('s')], () => f, newDecideState(), 'skip', 0)
    expect(a).toEqual([{ kind: 'skip', subscription: 's', failure: f }])
  })
  it('only records a conflict under strategy off', () => {
    const f = failure('23505', { finishLsn: '0/1' })
    expect(decide([sub('s')], () => f, newDecideState(), 'off', 0)[0]?.kind).toBe('record')
  })
  it('re-enables after a lost publisher and never skips it', () => {
    const f = failure('08006', { finishLsn: '0/1' })
    expect(decide([sub('s')], () => f, newDecideState(), 'skip', 0)[0]?.kind).toBe('enable')
  })
  it('records other errors without touching the subscription', () => {
    for (const code of ['55000', '42501', 'P0001']) {
      const f = failure(code, { finishLsn: '0/1' })
      expect(decide([sub('s')], () => f, newDecideState(), 'skip', 0)[0]?.kind).toBe('record')
    }
  })
  it('leaves enabled subscriptions and disabled ones with no logged failure alone', () => {
    expect(decide([sub('a', true)], () => failure('23505'), newDecideState(), 'skip', 0)).toEqual(
      [],
    )
    expect(decide([sub('b')], () => undefined, newDecideState(), 'skip', 0)).toEqual([])
  })
  it('acts on one failure once', () => {
    const state = newDecideState()
    const f = failure('23505', { finishLsn: '0/1' })
    const [a] = decide([sub('s')], () => f, state, 'skip', 0)
    acted(state, a!, 0)
    expect(decide([sub('s')], () => f, state, 'skip', 10)).toEqual([])
  })
  it('backs off re-enables of a publisher that keeps failing', () => {
    const state = newDecideState()
    let n = 0
    const next = () => failure('08006', { id: `x${n}` })
    let t = 0
    const times: number[] = []
    for (let i = 0; i < 4; i++) {
      // try every 100 ms until the backoff lets an enable through
      for (;;) {
        const [a] = decide([sub('s')], next, state, 'skip', t)
        if (a) {
          acted(state, a, t)
          times.push(t)
          n++
          break
        }
        t += 100
      }
    }
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(BACKOFF_MIN_MS)
    expect(times[3]! - times[2]!).toBeGreaterThanOrEqual(4 * BACKOFF_MIN_MS)
  })
})
