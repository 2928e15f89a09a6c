// Two nodes that dial each other at the same moment keep one connection, not two (redial.ts
// SECOND_DIAL_MS): six real libp2p nodes whose bootstrap lists name every other one by id, so
// that every pair dials both ways at start.
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadOrCreateIdentity, peerIdOf } from '../../src/mesh/keys.js'
import type { Mesh } from '../../src/mesh/node.js'
import { freePort } from '../fixtures/arbiters.js'
import { fullMesh, MeshLab, waitFor } from '../fixtures/mesh-nodes.js'

const N = 6
const lab = new MeshLab()
const meshes: Mesh[] = []

beforeAll(async () => {
  await lab.setup()
  // MeshLab names node k's identity file node<k>.key: made here first, to know every peer id
  const peers = []
  for (let k = 0; k < N; k++) {
    const key = await loadOrCreateIdentity(path.join(lab.dir, `node${k}.key`))
    peers.push({ port: await freePort(), id: peerIdOf(key) })
  }
  const addr = (p: { port: number; id: string }) => `/ip4/127.0.0.1/tcp/${p.port}/p2p/${p.id}`
  for (const [k, p] of peers.entries()) {
    const others = peers.filter((_, j) => j !== k).map(addr)
    meshes.push(lab.mesh({ listen: [`/ip4/127.0.0.1/tcp/${p.port}`], bootstrap: others }))
  }
  await Promise.all(meshes.map((m) => m.start()))
})

afterAll(() => lab.teardown())

describe('simultaneous dials', () => {
  it('leave every pair with one connection', async () => {
    await waitFor(() => fullMesh(meshes), 20_000, 'a full mesh of six')
    // the refused side may see its connection open for a moment before the refusal reaches it
    // (a crossing dial still in flight when the pair connected): a second connection may come
    // and go, none may stay
    const single = () => fullMesh(meshes) && meshes.every((m) => m.connectionCount() === N - 1)
    await waitFor(single, 10_000, 'one connection per pair')
    const doubled = () => meshes.some((m) => m.connectionCount() > N - 1)
    let since: number | undefined
    let longest = 0
    const end = performance.now() + 3000
    while (performance.now() < end) {
      const now = performance.now()
      since = doubled() ? (since ?? now) : undefined
      if (since !== undefined) longest = Math.max(longest, now - since)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(longest).toBeLessThan(1000)
    await waitFor(single, 5000, 'one connection per pair, still')
  })
})
