// gossipsub's once-a-second timers on the arbiter's beat (src/mesh/gossip-beat.ts): a real
// libp2p node with traktor's gossipsub, started; after the alignment its heartbeat is counted
// from a whole second and its score decay runs at the whole seconds, until stopped.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { beatGossipsub } from '../../src/mesh/gossip-beat.js'
import { createMeshNode, type MeshNode } from '../../src/mesh/libp2p.js'
import { waitFor } from '../../src/wait.js'

let node: MeshNode | undefined

afterEach(async () => {
  await node?.stop()
  node = undefined
})

describe('gossipsub on the beat', () => {
  it('counts the heartbeat from a whole second and decays scores at the whole seconds', async () => {
    node = await createMeshNode({
      privateKey: await generateKeyPair('Ed25519'),
      listen: [multiaddr('/ip4/127.0.0.1/tcp/0')],
      psk: undefined,
      isBlocked: () => false,
    })
    await node.start()
    const pubsub = node.services.pubsub as unknown as {
      status: { hearbeatStartMs: number }
      score: { background(): void; _backgroundInterval: unknown }
    }
    const calls: number[] = []
    vi.spyOn(pubsub.score, 'background').mockImplementation(() => {
      calls.push(Date.now())
    })
    const beat = beatGossipsub(pubsub)
    expect(beat).toBeDefined()
    expect(pubsub.status.hearbeatStartMs % 1000).toBe(0)
    await waitFor(() => calls.length >= 2, 5000, 'two score decays')
    // on the whole second, give or take a busy machine's timer lateness
    for (const t of calls) expect(t % 1000).toBeLessThan(100)
    beat?.stop()
    const n = calls.length
    await new Promise((r) => setTimeout(r, 1300)) // a decay would have come by now
    expect(calls).toHaveLength(n)
  })

  it('leaves alone what is not a started gossipsub', () => {
    expect(beatGossipsub({})).toBeUndefined()
    expect(beatGossipsub({ score: { background: 1 } })).toBeUndefined()
  })
})
