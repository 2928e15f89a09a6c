// Every member's record, and a hello's list of peers, carry addresses; the full mesh keeps
// them where its redialer and an rpc request to a member not connected yet find them
// (addrsOf), not in libp2p's peer store, whose writes were a fifth of a 64-member start's CPU.
// The node here is a stand-in that counts peer-store writes (FakeNode; the real libp2p node is
// tested in test/integration/mesh.test.ts and, for rpc, mesh-sparse-arbiters.test.ts).
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
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

describe('full mesh: learning a peer’s addresses', () => {
  it('keeps them for the redialer and rpc, never in the peer store, until the peer is forgotten', async () => {
    const { mesh, other, merges } = await setup()
    const a = `/ip4/127.0.0.1/tcp/4001/p2p/${other}`
    const b = `/ip4/127.0.0.1/tcp/4002/p2p/${other}`
    for (let i = 0; i < 3; i++) expect(mesh.learn(other, [a])).toBe(true) // not connected
    expect(mesh.addrsOf(other)?.map(String)).toEqual([a])
    mesh.learn(other, [b])
    expect(mesh.addrsOf(other)?.map(String)).toEqual([a, b])
    mesh.forget(other)
    expect(mesh.addrsOf(other)).toBeUndefined()
    expect(merges).toEqual([])
  })

  it('ignores addresses that name another peer', async () => {
    const { mesh, other, merges } = await setup()
    const self = `/ip4/127.0.0.1/tcp/4001/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519'))}`
    expect(mesh.learn(other, [self, 'not an address'])).toBe(false)
    expect(mesh.addrsOf(other)).toBeUndefined()
    expect(merges).toEqual([])
  })
})
