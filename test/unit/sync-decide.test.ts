// Sync mode's pure decision (issue 15): which peers a commit on this node waits for.
import { describe, expect, it } from 'vitest'
import {
  CATCH_UP_BYTES,
  cyclesToBreak,
  decideStandbys,
  SyncMode,
} from '../../src/cluster/sync-mode.js'
import { silentLogger } from '../../src/log.js'
import { isOurs, standbysValue } from '../../src/postgres/sync-standbys.js'
import { waitFor } from '../../src/wait.js'

const member = (nodeId: number, state: 'alive' | 'suspect' | 'dead' = 'alive') => ({
  nodeId,
  state,
  joinState: 'ready' as const,
  duplicate: false,
})
const streaming = (peer: number, lagBytes: number | null = 0) => ({
  peer,
  state: 'streaming',
  lagBytes,
})

describe('decideStandbys', () => {
  it('waits for every live peer that streams and has caught up', () => {
    const d = decideStandbys({
      self: 0,
      members: [member(0), member(1), member(2)],
      senders: [streaming(1), streaming(2, 1000)],
      current: [],
    })
    expect(d).toMatchObject({ want: [1, 2], added: [1, 2], removed: [], outside: [] })
  })

  it('lets a dead peer or one that stopped streaming go at once', () => {
    const dead = decideStandbys({
      self: 0,
      members: [member(1, 'dead'), member(2)],
      senders: [streaming(1), streaming(2)],
      current: [1, 2],
    })
    expect(dead).toMatchObject({ want: [2], removed: [1], outside: [] })
    expect(dead.verdict).toBe('stop waiting for nodes 1')
    const cut = decideStandbys({
      self: 0,
      members: [member(1), member(2)],
      senders: [streaming(2), { peer: 1, state: 'catchup', lagBytes: 0 }],
      current: [1, 2],
    })
    expect(cut).toMatchObject({ want: [2], removed: [1], outside: [1] })
  })

  it('takes a returning peer back only once it has caught up, and keeps a lagging member', () => {
    const behind = decideStandbys({
      self: 0,
      members: [member(1), member(2)],
      senders: [streaming(1, CATCH_UP_BYTES + 1), streaming(2, CATCH_UP_BYTES + 1)],
      current: [2],
    })
    // node 1 is catching up (outside); node 2, in the set, stays while it lives
    expect(behind).toMatchObject({ want: [2], added: [], removed: [], outside: [1] })
    const caught = decideStandbys({
      self: 0,
      members: [member(1), member(2)],
      senders: [streaming(1, CATCH_UP_BYTES), streaming(2)],
      current: [2],
    })
    expect(caught).toMatchObject({ want: [1, 2], added: [1] })
  })

  it('ignores removed and duplicate members and its own node', () => {
    const d = decideStandbys({
      self: 0,
      members: [
        member(0),
        { ...member(1), joinState: 'removed' as const },
        { ...member(2), duplicate: true },
      ],
      senders: [streaming(0), streaming(1), streaming(2)],
      current: [],
    })
    expect(d.want).toEqual([])
    expect(d.verdict).toBe('unchanged: waiting for no peer')
  })
})

describe('the setting', () => {
  it('names the peers subscriptions to this node, quoted, ANY of all', () => {
    expect(standbysValue(0, [2, 1])).toBe('ANY 2 ("trktr_sub_1_0", "trktr_sub_2_0")')
    expect(standbysValue(0, [])).toBe('')
  })

  it('replaces only what traktor wrote', () => {
    expect(isOurs('')).toBe(true)
    expect(isOurs(standbysValue(3, [1, 2]))).toBe(true)
    expect(isOurs('ANY 1 (standby_a)')).toBe(false)
    expect(isOurs('*')).toBe(false)
  })
})

describe('cyclesToBreak', () => {
  const b = (peer: number, applier = 100 + peer, waiter = 200) => ({ peer, applier, waiter })
  it('breaks a block seen twice, applying a lower node', () => {
    expect(cyclesToBreak(1, [b(0)], [b(0)])).toEqual([b(0)])
  })
  it('leaves a first sighting, a new waiter, and a higher node to that node', () => {
    expect(cyclesToBreak(1, [b(0)], [])).toEqual([])
    expect(cyclesToBreak(1, [b(0, 100, 201)], [b(0, 100, 200)])).toEqual([])
    expect(cyclesToBreak(1, [b(2)], [b(2)])).toEqual([])
  })
  it('around any cycle of nodes exactly the nodes applying a lower one break it', () => {
    // 0 waits for 1, 1 for 2, 2 for 0: node 1's applier of 0 is blocked, node 2's of 1, node 0's of 2
    const breaks = [
      cyclesToBreak(0, [b(2)], [b(2)]),
      cyclesToBreak(1, [b(0)], [b(0)]),
      cyclesToBreak(2, [b(1)], [b(1)]),
    ].map((x) => x.length)
    expect(breaks).toEqual([0, 1, 1])
  })
})

describe('SyncMode start', () => {
  it('writes the set at its first cycle even when it reads as already in place (a stale read after a reload)', async () => {
    const stale = standbysValue(0, [1], 1)
    const written: string[] = []
    const standbys = {
      // what this session still reads: the set an async-mode release just cleared
      currentStandbys: async () => stale,
      setStandbys: async (v: string) => {
        written.push(v)
      },
      walSenders: async () => [streaming(1)],
      blockedAppliers: async () => [],
    }
    const sync = new SyncMode({
      standbys: standbys as never,
      nodeId: 0,
      members: () => [member(0), member(1)] as never,
      log: silentLogger(),
      quorum: 1,
    })
    await sync.start()
    try {
      await waitFor(() => written.length > 0, 2000, 'a write', 10)
      expect(written).toEqual([stale])
    } finally {
      await sync.stop()
    }
  })
})
