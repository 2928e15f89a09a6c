// Membership's start() takes handlers on the mesh and its stop() gives every one back: a
// stopped membership hears no heartbeat and no peer event. The mesh here is a stand-in that
// only keeps the handlers (FakeMesh; the real one is tested in test/integration/mesh.test.ts).
import { describe, expect, it } from 'vitest'
import { Membership } from '../../src/cluster/membership.js'
import type { MeshPort } from '../../src/cluster/port.js'
import { silentLogger } from '../../src/log.js'
import type { GossipMessage } from '../../src/mesh/types.js'

class FakeMesh {
  readonly peerId = '12D3KooWself'
  readonly gossip = new Set<(m: GossipMessage) => void>()
  readonly peers = new Set<(p: string, e: 'connect' | 'disconnect') => void>()
  published = 0
  addresses = () => ['/ip4/127.0.0.1/tcp/1']
  publish = async () => {
    this.published++
  }
  subscribe = (_t: string, h: (m: GossipMessage) => void) => {
    this.gossip.add(h)
    return () => this.gossip.delete(h)
  }
  onPeer = (h: (p: string, e: 'connect' | 'disconnect') => void) => {
    this.peers.add(h)
    return () => this.peers.delete(h)
  }
}

describe('Membership lifecycle', () => {
  it('stop() releases what start() subscribed to', () => {
    const mesh = new FakeMesh()
    const m = new Membership({
      mesh: mesh as unknown as MeshPort,
      nodeId: 0,
      postgres: 'host=127.0.0.1',
      version: '0',
      timings: { heartbeatMs: 1000, suspectAfterMs: 2000, deadAfterMs: 3000 },
      log: silentLogger(),
      self: () => ({
        joinState: 'ready',
        replicasetVersion: 0,
        rosterVersion: 0,
        postgresUp: true,
      }),
    })
    m.start()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([1, 1])
    m.stop()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([0, 0])
    // and again: a second start takes one of each, not two
    m.start()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([1, 1])
    m.stop()
  })
})
