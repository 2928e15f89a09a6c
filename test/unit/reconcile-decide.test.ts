// The reconcile pass's decisions alone: adopt, arrive, found, wait; and where a newer roster
// is read from.
import { describe, expect, it } from 'vitest'
import type { Member } from '../../src/cluster/membership.js'
import {
  decidePass,
  donors,
  livePeers,
  type PassObservation,
  rosterSource,
} from '../../src/cluster/reconcile-decide.js'

const member = (nodeId: number, over: Partial<Member> = {}): Member => ({
  nodeId,
  peerId: `peer${nodeId}`,
  postgres: '',
  version: '0',
  incarnation: 1,
  joinState: 'ready',
  joinPercent: undefined,
  replicasetVersion: 1,
  rosterVersion: 0,
  postgresUp: true,
  state: 'alive',
  lastHeardMs: 0,
  aliveSinceMs: 0,
  flaps: 0,
  duplicate: false,
  ...over,
})

const obs = (over: Partial<PassObservation> = {}): PassObservation => ({
  self: 0,
  removed: new Set(),
  joinState: 'joining',
  joinError: undefined,
  adoptFailed: false,
  version: 0,
  members: [],
  bootstrapsElsewhere: false,
  graceOver: false,
  ...over,
})

describe('decidePass', () => {
  it('a removed node takes no part', () => {
    expect(decidePass(obs({ removed: new Set([0]), members: [member(1)] })).kind).toBe('removed')
  })

  it('adopts from the alive ready member with the newest replicaset, joining or ready', () => {
    const members = [
      member(1, { replicasetVersion: 3 }),
      member(2, { replicasetVersion: 5 }),
      member(3, { replicasetVersion: 9, state: 'suspect' }),
      member(4, { replicasetVersion: 8, joinState: 'copying' }),
    ]
    const v = decidePass(obs({ members, version: 2 }))
    expect(v.kind === 'adopt' && v.from.nodeId).toBe(2)
    const ready = decidePass(obs({ members, version: 2, joinState: 'ready' }))
    expect(ready.kind === 'adopt' && ready.from.nodeId).toBe(2)
    expect(decidePass(obs({ members, version: 5, joinState: 'ready' })).kind).toBe('steady')
  })

  it('a joining node arrives once a ready member is there, and waits on a join error', () => {
    const members = [member(1, { replicasetVersion: 0 })]
    expect(decidePass(obs({ members })).kind).toBe('arrive')
    expect(decidePass(obs({ members, joinError: 'table differs' }))).toEqual({
      kind: 'wait',
      why: 'table differs',
    })
  })

  it("a failed adopt's error stands while a member is ahead, not once this node caught up", () => {
    const ahead = [member(1, { replicasetVersion: 4 })]
    const failed = { joinError: 'cannot join: table differs', adoptFailed: true }
    // still behind: adopt again (the checks may pass now)
    expect(decidePass(obs({ ...failed, members: ahead, version: 3 })).kind).toBe('adopt')
    // caught up another way (in-doubt recovery committed it here): arrive, not wait for ever
    expect(decidePass(obs({ ...failed, members: ahead, version: 4 })).kind).toBe('arrive')
    // a join error of another kind keeps the node waiting
    expect(
      decidePass(obs({ ...failed, adoptFailed: false, members: ahead, version: 4 })).kind,
    ).toBe('wait')
  })

  it('founds a cluster alone only after the grace period, and not when told to join another', () => {
    expect(decidePass(obs()).kind).toBe('wait')
    expect(decidePass(obs({ graceOver: true })).kind).toBe('arrive')
    expect(decidePass(obs({ graceOver: true, bootstrapsElsewhere: true })).kind).toBe('wait')
    // members heard, none ready yet: founding after the grace period (as before)
    const joining = [member(1, { joinState: 'joining', replicasetVersion: 0 })]
    expect(
      decidePass(obs({ graceOver: true, bootstrapsElsewhere: true, members: joining })).kind,
    ).toBe('arrive')
  })

  it('does not found a cluster while a ready member is only suspect (a busy host)', () => {
    const suspect = [member(1, { state: 'suspect', replicasetVersion: 0 })]
    const o = { graceOver: true, bootstrapsElsewhere: true, members: suspect }
    expect(decidePass(obs(o)).kind).toBe('wait')
    // once it is dead it is no longer the cluster this node waits for
    const dead = [member(1, { state: 'dead', replicasetVersion: 0 })]
    expect(decidePass(obs({ ...o, members: dead })).kind).toBe('arrive')
  })
})

describe('rosterSource', () => {
  it('reads the newest roster newer than ours', () => {
    const alive = [member(1, { rosterVersion: 4 }), member(2, { rosterVersion: 7 })]
    expect(rosterSource(alive, 5, 'ready')?.nodeId).toBe(2)
    expect(rosterSource(alive, 7, 'ready')).toBeUndefined()
  })

  it('a joining node asks a ready member even without a newer roster', () => {
    const alive = [member(1, { joinState: 'copying' }), member(2)]
    expect(rosterSource(alive, 0, 'joining')?.nodeId).toBe(2)
    expect(rosterSource(alive, 0, 'ready')).toBeUndefined()
  })
})

describe('who a joining node copies from, and who it counts as a peer', () => {
  const all = [
    member(0),
    member(1),
    member(2, { state: 'dead' }),
    member(3, { duplicate: true }),
    member(4, { joinState: 'removed' }),
    member(5),
    member(6, { joinState: 'copying' }),
    member(7, { postgresUp: false }),
  ]
  it('peers: every other live node, whatever its join state, not removed or claimed twice', () => {
    expect(livePeers(all, 0, new Set([5])).map((m) => m.nodeId)).toEqual([1, 6, 7])
  })
  it('donors: ready, PostgreSQL up, not removed, stable', () => {
    // as Membership.isStable: alive, one claim, alive long enough (node 1 just came back)
    const stable = (m: Member) => m.state === 'alive' && !m.duplicate && m.nodeId !== 1
    expect(donors(all, new Set([5]), stable).map((m) => m.nodeId)).toEqual([0])
    expect(donors(all, new Set(), () => true).map((m) => m.nodeId)).toEqual([0, 1, 2, 3, 5])
  })
})
