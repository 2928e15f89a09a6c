// A heartbeat relayed late or replayed is no news of its sender: a member seen dead stays
// dead until it says something newer (issue 14: a stopped node flapped alive → suspect → dead).
// The mesh is a stand-in that hands heartbeats to the handler (FakeMesh; the real gossip is
// tested in test/integration/mesh.test.ts); the clock is Membership's injected `now`.
import { describe, expect, it } from 'vitest'
import { Membership, stale } from '../../src/cluster/membership.js'
import type { MeshPort } from '../../src/cluster/port.js'
import { silentLogger } from '../../src/log.js'
import type { GossipMessage } from '../../src/mesh/types.js'

const PEER = '12D3KooWpeer'

function setup() {
  let clock = 0
  const gossip: Array<(m: GossipMessage) => void> = []
  const peers: Array<(p: string, e: 'connect' | 'disconnect') => void> = []
  const mesh = {
    peerId: '12D3KooWself',
    addresses: () => [],
    publish: async () => {},
    subscribe: (_t: string, h: (m: GossipMessage) => void) => {
      gossip.push(h)
      return () => {}
    },
    onPeer: (h: (p: string, e: 'connect' | 'disconnect') => void) => {
      peers.push(h)
      return () => {}
    },
  }
  const m = new Membership({
    mesh: mesh as unknown as MeshPort,
    nodeId: 0,
    postgres: 'host=127.0.0.1',
    version: '0',
    timings: { heartbeatMs: 1000, suspectAfterMs: 2000, deadAfterMs: 3000 },
    log: silentLogger(),
    now: () => clock,
    self: () => ({ joinState: 'ready', replicasetVersion: 0, rosterVersion: 0, postgresUp: true }),
  })
  m.start()
  const heartbeat = (incarnation: number, sentAt: number, seq?: number) => {
    const payload = {
      v: 1,
      kind: 'heartbeat',
      nodeId: 1,
      peerId: PEER,
      postgres: 'host=127.0.0.1 port=5433',
      version: '0',
      incarnation,
      state: 'ready',
      replicasetVersion: 0,
      addrs: [],
      sentAt,
      ...(seq === undefined ? {} : { seq }),
    }
    for (const h of gossip) h({ topic: 'membership', from: PEER, payload } as GossipMessage)
  }
  return {
    m,
    heartbeat,
    /** the clock moves on, and the detector looks again (as its timer would) */
    at: (ms: number) => {
      clock = ms
      for (const h of peers) h(PEER, 'connect')
    },
    state: () => m.members().find((x) => x.nodeId === 1)?.state,
  }
}

describe('membership: stale heartbeats', () => {
  it('a dead member stays dead when an old heartbeat of its run arrives late', () => {
    const t = setup()
    try {
      t.heartbeat(5, 1000)
      expect(t.state()).toBe('alive')
      t.at(3500)
      expect(t.state()).toBe('dead')
      t.heartbeat(5, 1000) // the same one again
      t.heartbeat(5, 900) // an older one
      t.at(3600)
      expect(t.state()).toBe('dead')
      t.heartbeat(5, 4500) // news: it is alive after all
      expect(t.state()).toBe('alive')
    } finally {
      t.m.stop()
    }
  })

  it('a restarted member is taken whatever its incarnation once the old run is dead', () => {
    const t = setup()
    try {
      t.heartbeat(5, 1000)
      t.heartbeat(4, 1100) // an older run while the newer is alive: ignored
      t.at(3500)
      expect(t.state()).toBe('dead')
      t.heartbeat(4, 200) // a new run on a host whose clock went back
      expect(t.state()).toBe('alive')
    } finally {
      t.m.stop()
    }
  })

  it('orders by the counter where the sender has one: a clock stepped back is still news', () => {
    const t = setup()
    try {
      t.heartbeat(5, 1000, 7)
      t.at(2500)
      expect(t.state()).toBe('suspect')
      t.heartbeat(5, 400, 8) // its clock stepped back; its counter did not
      expect(t.state()).toBe('alive')
      t.at(6000)
      t.heartbeat(5, 9000, 8) // the same counter again, whatever its clock says
      expect(t.state()).toBe('dead')
    } finally {
      t.m.stop()
    }
  })

  it('stale(): newer in the same run, or a later run, is news; the rest is not', () => {
    const alive = { incarnation: 5, sentAt: 1000, seq: undefined, state: 'alive' as const }
    expect(stale({ incarnation: 5, sentAt: 1000 }, alive)).toBe(true)
    expect(stale({ incarnation: 5, sentAt: 999 }, alive)).toBe(true)
    expect(stale({ incarnation: 5, sentAt: 1001 }, alive)).toBe(false)
    expect(stale({ incarnation: 6, sentAt: 1 }, alive)).toBe(false)
    expect(stale({ incarnation: 4, sentAt: 9999 }, alive)).toBe(true)
    expect(stale({ incarnation: 4, sentAt: 9999 }, { ...alive, state: 'dead' })).toBe(false)
  })
})
