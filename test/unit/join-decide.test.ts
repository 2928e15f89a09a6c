// Issue 12: what a node about to be ready does — be ready, copy the cluster's data, or refuse.
import { describe, expect, it } from 'vitest'
import {
  copyingNow,
  decideJoin,
  type JoinFacts,
  type JoinPeer,
  leftOut,
  memberView,
} from '../../src/cluster/join-decide.js'

const fresh: JoinFacts = {
  mode: 'empty-only',
  marker: undefined,
  subscriptions: 0,
  readyPeers: 2,
  tables: 3,
  occupied: [],
}

describe('decideJoin', () => {
  it('copies into empty tables by default', () => {
    expect(decideJoin(fresh)).toEqual({ kind: 'copy', why: 'empty tables' })
  })

  it('refuses tables that hold rows, naming each with its count', () => {
    const d = decideJoin({
      ...fresh,
      occupied: [
        { table: 'demo.a', rows: 12 },
        { table: 'demo.b', rows: 1 },
      ],
    })
    expect(d.kind).toBe('refuse')
    expect(d.kind === 'refuse' && d.error).toMatch(/demo\.a holds 12 rows, demo\.b holds 1 rows/)
    expect(d.kind === 'refuse' && d.error).toMatch(/"copy".*"no-copy"/)
  })

  it('replaces rows with join = "copy", keeps them with join = "no-copy"', () => {
    const occupied = [{ table: 'demo.a', rows: 12 }]
    expect(decideJoin({ ...fresh, mode: 'copy', occupied }).kind).toBe('copy')
    expect(decideJoin({ ...fresh, mode: 'no-copy', occupied }).kind).toBe('ready')
  })

  it('starts an interrupted copy over, whatever the tables hold', () => {
    const d = decideJoin({
      ...fresh,
      marker: { state: 'copying', donor: 1 },
      occupied: [{ table: 'demo.a', rows: 5 }],
    })
    expect(d).toEqual({ kind: 'copy', why: 'an interrupted copy starts over' })
  })

  it('a member before, a founder, or a cluster without tables: ready without a copy', () => {
    expect(decideJoin({ ...fresh, marker: { state: 'done', donor: 0 } }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, subscriptions: 2 }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, readyPeers: 0 }).kind).toBe('ready')
    expect(decideJoin({ ...fresh, tables: 0 }).kind).toBe('ready')
  })

  it('does not found a cluster while the ready members it heard are only dead for now', () => {
    // CI: node 6 lost its bootstrap's connection for a second, saw it dead, and founded
    const d = decideJoin({ ...fresh, readyPeers: 0, readyHeard: 1 })
    expect(d).toEqual({
      kind: 'wait',
      why: 'no ready member is alive now: waiting for one to copy from',
    })
    // a member before stays one whoever is alive; nobody ever heard: it founds
    expect(decideJoin({ ...fresh, readyPeers: 0, readyHeard: 1, subscriptions: 2 }).kind).toBe(
      'ready',
    )
    expect(
      decideJoin({ ...fresh, readyPeers: 0, readyHeard: 1, marker: { state: 'done', donor: 0 } })
        .kind,
    ).toBe('ready')
    expect(decideJoin({ ...fresh, readyPeers: 0, readyHeard: 0 }).kind).toBe('ready')
  })
})

describe('who the copy works with', () => {
  const peer = (nodeId: number, joinState: string, postgresUp = true): JoinPeer => ({
    nodeId,
    joinState,
    postgresUp,
  })

  it('waits while another node copies, not for joining or ready ones', () => {
    expect(copyingNow([peer(0, 'ready'), peer(4, 'copying'), peer(5, 'joining')])).toEqual([4])
    expect(copyingNow([peer(0, 'ready'), peer(5, 'joining')])).toEqual([])
  })

  it('names a ready member that is not a donor candidate (the joincopy gap)', () => {
    // node 2 was ready but seen 40 ms too late to be stable: left out, its writes were lost
    const peers = [peer(0, 'ready'), peer(1, 'ready'), peer(2, 'ready')]
    expect(leftOut(peers, [{ nodeId: 0 }, { nodeId: 1 }])).toEqual([2])
    expect(leftOut(peers, [{ nodeId: 0 }, { nodeId: 1 }, { nodeId: 2 }])).toEqual([])
  })

  it('leaves out nodes that cannot write: PostgreSQL down, copying, joining', () => {
    const peers = [
      peer(0, 'ready'),
      peer(1, 'ready', false),
      peer(3, 'copying'),
      peer(4, 'joining'),
    ]
    expect(leftOut(peers, [{ nodeId: 0 }])).toEqual([])
  })

  it("a member's view: itself and the live nodes it hears, not dead, removed or claimed twice", () => {
    const rec = (nodeId: number, state: string, duplicate = false) => ({
      ...peer(nodeId, 'ready'),
      state,
      duplicate,
    })
    const members = [
      rec(1, 'alive'),
      rec(2, 'suspect'),
      rec(3, 'dead'),
      rec(4, 'alive', true),
      rec(5, 'alive'),
      rec(0, 'alive'), // its own id claimed by another process: not listed twice
    ]
    const view = memberView(peer(0, 'ready'), members, new Set([5]))
    expect(view.map((v) => v.nodeId)).toEqual([0, 1, 2])
    expect(Object.keys(view[1] ?? {}).sort()).toEqual(['joinState', 'nodeId', 'postgresUp'])
  })
})
