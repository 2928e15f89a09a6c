// The check that follows a burst of row-level conflicts (src/cluster/check-after.ts): when it
// runs, when it leaves the table to a check already made, how often per table.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AFTER_CONFLICTS_GAP_MS,
  AFTER_CONFLICTS_MS,
  ChecksAfterConflicts,
  type Mended,
  RANK_STAGGER_MS,
  RETRIES,
  RETRY_AFTER_MS,
} from '../../src/cluster/check-after.js'
import { silentLogger } from '../../src/log.js'

type Opts = {
  rank?: number
  last?: number
  missing?: number
  verdict?: string
  mend?: (relation: string) => Promise<Mended | undefined>
}

function make(opts: Opts = {}) {
  const checked: string[] = []
  // each check's own record: a later turn finds the table "checked since"
  const records = new Map<string, number>()
  const after = new ChecksAfterConflicts({
    log: silentLogger(),
    check: async (relation) => {
      checked.push(relation)
      records.set(relation, Date.now())
      return { verdict: opts.verdict ?? 'same', differing_rows: opts.verdict === 'differs' ? 3 : 0 }
    },
    ...(opts.mend ? { mend: opts.mend } : {}),
    lastCheckAtMs: (relation) => records.get(relation) ?? opts.last,
    missing: () => opts.missing ?? 0,
    rank: () => opts.rank ?? 0,
  })
  after.start()
  return { after, checked, opts }
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
    await vi.advanceTimersByTimeAsync(1) // a burst that ended after that check began
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS - AFTER_CONFLICTS_MS - 2)
    expect(checked).toEqual(['demo.a'])
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS + 1)
    expect(checked).toEqual(['demo.a', 'demo.a'])
    after.stop()
  })

  // a member dead or frozen when the check ran: the members' turns leave the table to it
  // (its record is the latest), so the node that made it makes it again until all take part
  it('is made again by its node while a member could not take part, until one sees them all', async () => {
    const { after, checked, opts } = make({ missing: 1 })
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect(checked).toEqual(['demo.a'])
    await vi.advanceTimersByTimeAsync(RETRY_AFTER_MS - 1)
    expect(checked).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(checked).toHaveLength(2)
    opts.missing = 0 // the member is back: the next one sees every node, and is the last
    await vi.advanceTimersByTimeAsync(2 * RETRY_AFTER_MS)
    expect(checked).toHaveLength(3)
    await vi.advanceTimersByTimeAsync(10 * RETRY_AFTER_MS)
    expect(checked).toHaveLength(3)
    after.stop()
  })

  it(`is made again at most ${RETRIES} times, and after a failed check too`, async () => {
    const gone = make({ missing: 1 })
    gone.after.request('demo.a', Date.now())
    const failed = make({ verdict: 'failed' })
    failed.after.request('demo.b', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS)
    expect(gone.checked).toHaveLength(1 + RETRIES)
    expect(failed.checked).toHaveLength(1 + RETRIES)
    gone.after.stop()
    failed.after.stop()
  })

  it('mends what it found differing when every member took part, and not otherwise', async () => {
    const mended: string[] = []
    const mend = async (relation: string): Promise<Mended> => {
      mended.push(relation)
      return { repaired_rows: 2, after: { verdict: 'differs', differing_rows: 1 } }
    }
    const all = make({ verdict: 'differs', mend })
    all.after.request('demo.a', Date.now())
    const away = make({ verdict: 'differs', mend, missing: 1 })
    away.after.request('demo.b', Date.now())
    const same = make({ verdict: 'consistent', mend })
    same.after.request('demo.c', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect(mended).toEqual(['demo.a'])
    // one left differing after the mend: not made again (only a check that missed a member is)
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS)
    expect(all.checked).toEqual(['demo.a'])
    expect(mended).toEqual(['demo.a'])
    for (const x of [all, away, same]) x.after.stop()
  })

  it('a mend that fails leaves the check as it was, and the next burst is checked again', async () => {
    let tries = 0
    const { after, checked } = make({
      verdict: 'differs',
      mend: async () => {
        tries++
        throw new Error('track_commit_timestamp is off on some node')
      },
    })
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_MS)
    expect([checked.length, tries]).toEqual([1, 1])
    await vi.advanceTimersByTimeAsync(1) // a burst that ended after that check began
    after.request('demo.a', Date.now())
    await vi.advanceTimersByTimeAsync(AFTER_CONFLICTS_GAP_MS)
    expect([checked.length, tries]).toEqual([2, 2])
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
