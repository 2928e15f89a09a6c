// The check that follows a burst of row-level conflicts (src/cluster/check-after.ts): when it
// runs, when it leaves the table to a check already made, how often per table.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AFTER_CONFLICTS_GAP_MS,
  AFTER_CONFLICTS_MS,
  ChecksAfterConflicts,
  RANK_STAGGER_MS,
} from '../../src/cluster/check-after.js'
import { silentLogger } from '../../src/log.js'

function make(opts: { rank?: number; last?: number } = {}) {
  const checked: string[] = []
  const after = new ChecksAfterConflicts({
    log: silentLogger(),
    check: async (relation) => {
      checked.push(relation)
      return { verdict: 'same', differing_rows: 0 }
    },
    lastCheckAtMs: () => opts.last,
    rank: () => opts.rank ?? 0,
  })
  after.start()
  return { after, checked }
}

describe('the check after row-level conflicts', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('checks each table once, at its turn after the burst (staggered by rank)', async () => {
    const { after, checked } = make({ rank: 2 })
    after.request('demo.a', Date.now())
    after.request('demo.a', Date.now()) // the same burst told twice
    after.request('demo.b', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS + 2 * RANK_STAGGER_MS - 1)
    expect(checked).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    expect(checked.sort()).toEqual(['demo.a', 'demo.b'])
    after.stop()
  })

  it('leaves a table to a check that started after the burst ended', async () => {
    const burstEnd = Date.now() - 1000
    const { after, checked } = make({ last: burstEnd + 500 })
    after.request('demo.a', burstEnd)
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect(checked).toEqual([])
    // a check that started before the burst ended does not count
    const older = make({ last: burstEnd - 1 })
    older.after.request('demo.a', burstEnd)
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect(older.checked).toEqual(['demo.a'])
    after.stop()
    older.after.stop()
  })

  it('checks a table at most once per gap; a later burst waits for it', async () => {
    const { after, checked } = make()
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect(checked).toEqual(['demo.a'])
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS - AFTER_CONFLICTS_MS - 1)
    expect(checked).toEqual(['demo.a'])
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS + 1)
    expect(checked).toEqual(['demo.a', 'demo.a'])
    after.stop()
  })

  it('runs nothing once stopped', async () => {
    const { after, checked } = make()
    after.request('demo.a', Date.now())
    after.stop()
    after.request('demo.b', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS)
    expect(checked).toEqual([])
  })
})
