import { describe, expect, it } from 'vitest'
import {
  ARM_ATTEMPTS,
  acted,
  applyErrorCounted,
  BACKOFF_MIN_MS,
  decide,
  newDecideState,
  type SubscriptionView,
  settle,
  uncounted,
} from '../../src/resolver/decide.js'
import type { ApplyFailure } from '../../src/resolver/failures.js'

// a failed subscription: the server counted one apply error (its count is never reset here)
const sub = (name: string, enabled = false, applyErrors = 1): SubscriptionView => ({
  name,
  oid: 1,
  enabled,
  applyErrors,
  statsReset: null,
})
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
    expect(a).toEqual([
      {
        kind: 'skip',
        subscription: 's',
        failure: f,
        counted: { oid: 1, applyErrors: 1, statsReset: null },
      },
    ])
  })
  it('lww: arms on an insert conflict, again on a repeat, then skips one that persists', () => {
    const state = newDecideState()
    let errors = 1
    const kinds: string[] = []
    for (let attempt = 0; attempt < ARM_ATTEMPTS + 1; attempt++) {
      // each attempt: the same remote transaction fails again (a new log record, counted)
      const f = failure('23505', { finishLsn: '0/1', id: `t|${attempt}|23505` })
      const [a] = decide([sub('s', false, errors)], () => f, state, 'lww', attempt)
      if (!a) throw new Error('no action')
      kinds.push(a.kind)
      acted(state, a, attempt)
      errors++
    }
    expect(kinds).toEqual([...Array(ARM_ATTEMPTS).fill('arm'), 'skip'])
    // another transaction of the same subscription is armed afresh
    const other = failure('23505', { finishLsn: '0/2', id: 't|x|23505' })
    expect(decide([sub('s', false, errors)], () => other, state, 'lww', 9)[0]?.kind).toBe('arm')
  })
  it('lww: re-enables after a deadlock with a local transaction (40P01)', () => {
    const f = failure('40P01', { finishLsn: '0/1' })
    expect(decide([sub('s')], () => f, newDecideState(), 'lww', 0)[0]?.kind).toBe('enable')
  })
  it('takes the strategy of the failing table when it has an override', () => {
    const perTable = (relation: string | undefined) =>
      relation === 'demo.legacy' ? 'skip' : relation === 'demo.manual' ? 'off' : 'lww'
    const on = (relation?: string) =>
      decide(
        [sub('s')],
        () => failure('23505', { finishLsn: '0/1', ...(relation ? { relation } : {}) }),
        newDecideState(),
        perTable,
        0,
      )[0]?.kind
    expect([on('demo.legacy'), on('demo.manual'), on('demo.kv'), on()]).toEqual([
      'skip',
      'record',
      'arm',
      'arm',
    ])
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
        // each failure of the publisher is one more apply error
        const [a] = decide([sub('s', false, n + 1)], next, state, 'skip', t)
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

  it('re-enables after every deadlock at once: no backoff, and none grown for a lost publisher', () => {
    const state = newDecideState()
    // a hot row: the apply worker deadlocks with a local writer every few hundred ms
    for (let n = 1; n <= 6; n++) {
      const f = failure(n % 2 ? '40P01' : '40001', { id: `dl${n}` })
      const [a] = decide([sub('s', false, n)], () => f, state, 'lww', n * 300)
      expect(a?.kind, `deadlock ${n}`).toBe('enable')
      acted(state, a!, n * 300)
    }
    // the publisher then goes away: its first re-enable is not held back by the deadlocks
    const lost = failure('08006', { id: 'lost' })
    const [a] = decide([sub('s', false, 7)], () => lost, state, 'lww', 2000)
    expect(a?.kind).toBe('enable')
  })

  it('re-enables after a lost publisher each time the server counted one more error', () => {
    const state = newDecideState()
    let t = 0
    for (let n = 1; n <= 3; n++) {
      const f = failure('08006', { id: `lost${n}` })
      t += 60_000
      const [a] = decide([sub('s', false, n)], () => f, state, 'skip', t)
      expect(a?.kind).toBe('enable')
      acted(state, a!, t)
    }
  })
})

describe('decide on failures the server did not count (issue 8, item 4)', () => {
  // log text anyone can make the server write, for a subscription the operator disabled
  const forged = [
    failure('23505', { id: 'f1', finishLsn: '0/DEADBEEF' }),
    failure('08006', { id: 'f2' }),
    failure('P0001', { id: 'f3' }),
  ]

  it('acts on no failure of a subscription that never had an apply error', () => {
    for (const f of forged) {
      for (const strategy of ['skip', 'off'] as const) {
        expect(decide([sub('s', false, 0)], () => f, newDecideState(), strategy, 0)).toEqual([])
      }
    }
  })

  it('acts on no new failure while the count stands where it stood when it last acted', () => {
    const state = newDecideState()
    const real = failure('23505', { id: 'real', finishLsn: '0/1' })
    const [a] = decide([sub('s', false, 3)], () => real, state, 'skip', 0)
    expect(a?.kind).toBe('skip')
    acted(state, a!, 0)
    // the operator disables; forged failures follow, the count stays at 3
    for (const f of forged)
      expect(decide([sub('s', false, 3)], () => f, state, 'skip', 1e6)).toEqual([])
    // a real one more
    expect(decide([sub('s', false, 4)], () => forged[1], state, 'skip', 1e6)[0]?.kind).toBe(
      'enable',
    )
  })

  it('names the subscriptions with a failure it did not take, for the verdict', () => {
    const state = newDecideState()
    const subs = [sub('a', false, 0), sub('b', false, 1), sub('c', true, 0), sub('d', false, 0)]
    const latest = (s: SubscriptionView) => (s.name === 'd' ? undefined : forged[0])
    expect(decide(subs, latest, state, 'skip', 0).map((a) => a.subscription)).toEqual(['b'])
    expect(uncounted(subs, latest, state)).toEqual(['a'])
  })

  it('waits for the count when the failure is logged before the worker flushed it', () => {
    const state = newDecideState()
    const first = failure('23505', { id: 'first', finishLsn: '0/1' })
    acted(state, decide([sub('s', false, 1)], () => first, state, 'skip', 0)[0]!, 0)
    const second = failure('23505', { id: 'second', finishLsn: '0/2' })
    expect(decide([sub('s', false, 1)], () => second, state, 'skip', 10)).toEqual([])
    expect(decide([sub('s', false, 2)], () => second, state, 'skip', 20)[0]?.kind).toBe('skip')
  })

  it("takes a lost publisher on the log's word when this server restarted since and its count is gone (crash recovery)", () => {
    // the failure at 04:23:42.740; the server restarted after it (an immediate shutdown)
    const restarted = { ...sub('s', false, 0), serverStart: '2026-11-29 04:23:43.1+00' }
    const lost = failure('08006', { id: 'lost' })
    const state = newDecideState()
    expect(decide([restarted], () => lost, state, 'skip', 0).map((a) => a.kind)).toEqual(['enable'])
    expect(uncounted([restarted], () => lost, state)).toEqual([])
    // a deadlock too; not a conflict, whose action (skip, record) waits for the count
    expect(decide([restarted], () => failure('40P01'), newDecideState(), 'skip', 0)).toHaveLength(1)
    const conflict = failure('23505', { finishLsn: '0/1' })
    expect(decide([restarted], () => conflict, newDecideState(), 'skip', 0)).toEqual([])
    // logged after the server's start, or with a count standing: the count decides, as before
    const before = { ...restarted, serverStart: '2026-11-29 04:23:40+00' }
    expect(decide([before], () => lost, newDecideState(), 'skip', 0)).toEqual([])
    expect(uncounted([before], () => lost, newDecideState())).toEqual(['s'])
    const counted = { ...restarted, applyErrors: 2 }
    const st = newDecideState()
    acted(st, decide([counted], () => lost, st, 'skip', 0)[0]!, 0)
    expect(decide([counted], () => failure('08006', { id: 'again' }), st, 'skip', 1e6)).toEqual([])
  })

  it('starts the count again after a reset, a crash (count lower) or a new subscription', () => {
    const last = { oid: 1, applyErrors: 5, statsReset: null }
    const view = (v: Partial<SubscriptionView>) => ({ ...sub('s'), ...v })
    expect(applyErrorCounted(view({ applyErrors: 5 }), last)).toBe(false)
    expect(applyErrorCounted(view({ applyErrors: 6 }), last)).toBe(true)
    expect(applyErrorCounted(view({ applyErrors: 1 }), last)).toBe(true)
    expect(applyErrorCounted(view({ applyErrors: 0 }), last)).toBe(false)
    expect(applyErrorCounted(view({ applyErrors: 5, statsReset: '2026-12-01' }), last)).toBe(true)
    expect(applyErrorCounted(view({ applyErrors: 0, statsReset: '2026-12-01' }), last)).toBe(false)
    expect(applyErrorCounted(view({ applyErrors: 5, oid: 2 }), last)).toBe(true)
    expect(applyErrorCounted(view({ applyErrors: 0 }), undefined)).toBe(false)
    expect(applyErrorCounted(view({ applyErrors: 1 }), undefined)).toBe(true)
  })
})

describe('settle: what a restarted resolver finds behind a running subscription', () => {
  const old = failure('23505', { finishLsn: '0/5', pid: 7 })
  it('an old failure of a subscription running since is not acted on when it is disabled later', () => {
    const state = newDecideState()
    // a fresh resolver (restarted arbiter) sees it running under worker 8, the failure was 7's
    settle([{ ...sub('s', true, 3), workerPid: 8 }], () => old, state)
    // an operator disables it: the old failure in the log is not a reason to touch it
    expect(decide([sub('s', false, 3)], () => old, state, 'skip', 0)).toEqual([])
    // a new failure (the count grew) is acted on
    const next = failure('23505', { finishLsn: '0/9', pid: 8, id: 't|2|23505' })
    expect(decide([sub('s', false, 4)], () => next, state, 'skip', 0)[0]?.kind).toBe('skip')
  })
  it('without settle the same old failure would be acted on (the check can fail)', () => {
    expect(decide([sub('s', false, 3)], () => old, newDecideState(), 'skip', 0)[0]?.kind).toBe(
      'skip',
    )
  })
  it('a failure counted by the server before its log line is read is still acted on', () => {
    const state = newDecideState()
    // worker 8 has just failed: the server counted it (4) while the catalog still says enabled
    // and the log reader still has only the old failure of worker 7
    settle([{ ...sub('s', true, 4), workerPid: 8 }], () => old, state)
    const next = failure('23505', { finishLsn: '0/9', pid: 8, id: 't|2|23505' })
    expect(decide([sub('s', false, 4)], () => next, state, 'skip', 0)[0]?.kind).toBe('skip')
  })
  it('settles nothing while the worker that failed is still the one seen, or none runs', () => {
    for (const workerPid of [7, null]) {
      const state = newDecideState()
      settle([{ ...sub('s', true, 3), workerPid }], () => old, state)
      expect(decide([sub('s', false, 3)], () => old, state, 'skip', 0)[0]?.kind).toBe('skip')
    }
  })
})
