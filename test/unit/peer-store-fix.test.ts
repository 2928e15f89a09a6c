// The peer store of a real (not started) mesh node: a merge of protocols the peer is known to
// have already, of gossipsub's topic tags or of identify's versions is answered without a write;
// every other write goes through, and what a patch removed is merged again.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMeshNode, type MeshNode } from '../../src/mesh/libp2p.js'
import { adds } from '../../src/mesh/peer-store-fix.js'

let node: MeshNode

beforeAll(async () => {
  node = await createMeshNode({
    privateKey: await generateKeyPair('Ed25519'),
    listen: [multiaddr('/ip4/127.0.0.1/tcp/0')],
    psk: undefined,
    isBlocked: () => false,
  })
})

afterAll(async () => {
  await node?.stop()
})

const aPeer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

describe('merges of protocols known already (peer-store-fix.ts)', () => {
  it('are answered with the record the last write returned, without a write', async () => {
    const peer = await aPeer()
    const first = await node.peerStore.merge(peer, { protocols: ['/a/1'] })
    // a write returns a record made anew; the same object back is no write
    expect(await node.peerStore.merge(peer, { protocols: ['/a/1'] })).toBe(first)
    const more = await node.peerStore.merge(peer, { protocols: ['/b/1'] })
    expect(more).not.toBe(first)
    expect([...more.protocols].sort()).toEqual(['/a/1', '/b/1'])
    expect(await node.peerStore.merge(peer, { protocols: ['/b/1', '/a/1'] })).toBe(more)
    // gossipsub's topic tags and identify's versions are not read here: not written either
    expect(await node.peerStore.merge(peer, { tags: { topic: { value: 100 } } })).toBe(more)
    const versions = { AgentVersion: new Uint8Array([1]), ProtocolVersion: new Uint8Array([2]) }
    expect(await node.peerStore.merge(peer, { metadata: versions })).toBe(more)
    expect((await node.peerStore.get(peer)).tags.size).toBe(0)
    // anything else is written: the keep-alive tag (libp2p's reconnect queue reads it), other
    // metadata, addresses
    const kept = await node.peerStore.merge(peer, { tags: { 'keep-alive': { value: 1 } } })
    expect(kept).not.toBe(more)
    expect(kept.tags.get('keep-alive')?.value).toBe(1)
    const meta = await node.peerStore.merge(peer, { metadata: { other: new Uint8Array([3]) } })
    expect(meta).not.toBe(kept)
    expect(meta.metadata.get('other')).toEqual(new Uint8Array([3]))
  })

  it('a protocol a patch removed is merged again; a deleted peer is made again', async () => {
    const peer = await aPeer()
    await node.peerStore.merge(peer, { protocols: ['/a/1', '/b/1'] })
    await node.peerStore.patch(peer, { protocols: ['/b/1'] })
    await node.peerStore.merge(peer, { protocols: ['/a/1'] })
    expect([...(await node.peerStore.get(peer)).protocols].sort()).toEqual(['/a/1', '/b/1'])
    await node.peerStore.delete(peer)
    await node.peerStore.merge(peer, { protocols: ['/a/1'] })
    expect((await node.peerStore.get(peer)).protocols).toEqual(['/a/1'])
  })

  it('counts as news a merge of anything but known protocols', () => {
    const known = new Set(['/a/1'])
    expect(adds({ protocols: ['/a/1'] }, known)).toBe(false)
    expect(adds({ protocols: ['/a/1', '/c/1'] }, known)).toBe(true)
    expect(adds({ protocols: ['/a/1'] }, undefined)).toBe(true)
    expect(adds({ protocols: ['/a/1'], metadata: {} }, known)).toBe(true)
    expect(adds({ tags: { t: { value: 1 } } }, known)).toBe(false)
    expect(adds({ tags: new Map([['keep-alive-x', { value: 1 }]]) }, known)).toBe(true)
    expect(adds({ metadata: new Map([['AgentVersion', new Uint8Array()]]) }, known)).toBe(false)
    expect(adds({ metadata: { AgentVersion: new Uint8Array(), x: new Uint8Array() } }, known)).toBe(
      true,
    )
    expect(adds({ tags: { t: { value: 1 } } }, undefined)).toBe(true)
  })
})
