// Every heartbeat carries its sender's addresses; the full mesh parses and stores them only
// when they change (or once a minute), since the peer store's write was the costliest part of
// an idle arbiter's gossip. The node here is a stand-in that counts peer-store writes
// (FakeNode; the real libp2p node is tested in test/integration/mesh.test.ts).
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { FullMesh } from '../../src/mesh/full-mesh.js'
import type { Gossip } from '../../src/mesh/gossip.js'
import type { MeshNode } from '../../src/mesh/libp2p.js'

async function setup() {
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const merges: string[][] = []
  const node = {
    peerId: self,
    getMultiaddrs: () => [],
    getConnections: () => [],
    peerStore: {
      merge: async (_p: unknown, d: { multiaddrs: Array<{ toString(): string }> }) => {
        merges.push(d.multiaddrs.map((a) => a.toString()))
      },
    },
  }
  const mesh = new FullMesh(
    {
      node: node as unknown as MeshNode,
      gossip: {} as Gossip,
      log: silentLogger(),
      counters: { dialFailures: 0 },
      isBlocked: () => false,
    },
    [],
  )
  return { mesh, other, merges }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('full mesh: learning a peer’s addresses', () => {
  it('stores them once while they stay the same, again when they change or a minute has passed', async () => {
    const { mesh, other, merges } = await setup()
    const a = [`/ip4/127.0.0.1/tcp/4001/p2p/${other}`]
    const b = [`/ip4/127.0.0.1/tcp/4002/p2p/${other}`]
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] })
    for (let i = 0; i < 5; i++) expect(mesh.learn(other, a)).toBe(true) // not connected
    expect(merges).toHaveLength(1)
    mesh.learn(other, b)
    expect(merges).toHaveLength(2)
    vi.setSystemTime(1_000_000 + 61_000)
    mesh.learn(other, b)
    expect(merges).toHaveLength(3)
    mesh.forget(other)
    mesh.learn(other, b)
    expect(merges).toHaveLength(4)
  })

  it('ignores addresses that name another peer', async () => {
    const { mesh, other, merges } = await setup()
    const self = `/ip4/127.0.0.1/tcp/4001/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519'))}`
    expect(mesh.learn(other, [self, 'not an address'])).toBe(false)
    expect(merges).toEqual([])
  })
})
