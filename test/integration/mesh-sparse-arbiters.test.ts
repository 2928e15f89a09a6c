// A sparse mesh of real arbiters (README "A sparse mesh"): six arbiters with
// mesh.fullMeshUpTo 2, so the mesh dials bootstrap peers and ring neighbours only. What a full
// mesh does must still hold: every member alive everywhere, one call adds a table on all six,
// rows flow every way and the tables end identical, and a killed member is seen dead by every
// node. (The arbiters' own calls — a join asking every member, a proposal's fan-out — dial the
// members they need and keep those connections, so six real arbiters end up connected pairwise;
// the mesh-only test/integration/mesh-sparse.test.ts covers members never connected.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { metric } from '../fixtures/arbiters.js'
import { call, MeshCluster, saveLogsOnFailure, waitFor } from '../fixtures/mesh-cluster.js'

const N = 6
const IDS = [...Array(N).keys()]
let c: MeshCluster

async function stateOf(viewer: number, node: number): Promise<string | undefined> {
  const nodes = (await call(c.api(viewer), 'GET', '/v1/cluster/nodes')).json.nodes as Array<{
    node: number
    state: string
  }>
  return nodes.find((n) => n.node === node)?.state
}

saveLogsOnFailure(() => c, 'mesh-sparse-arbiters')

beforeAll(async () => {
  c = await MeshCluster.create(N, 'sparse')
  for (const i of IDS) {
    await c.q(
      i,
      'CREATE TABLE demo.t (id int PRIMARY KEY, payload text); ALTER TABLE demo.t OWNER TO traktor_arbiter',
    )
  }
  const sparse = (i: number) => ({
    mesh: { ...(c.node(i).config.mesh as object), fullMeshUpTo: 2 },
  })
  await Promise.all(IDS.map((i) => c.start(i, sparse(i))))
}, 120_000)

afterAll(async () => {
  await c?.destroy()
})

describe('a sparse mesh of real arbiters', () => {
  it('sees every member alive everywhere, each node saying its mesh is sparse', async () => {
    await c.waitMeshed(IDS, 90_000)
    await c.waitSubscribed(IDS, 90_000)
    for (const i of IDS) {
      expect(await metric(c.api(i), 'traktor_mesh_sparse'), `node ${i}`).toBe(1)
      const peers = await metric(c.api(i), 'traktor_mesh_connected_peers')
      expect(peers, `node ${i}'s connected peers`).toBeGreaterThanOrEqual(1)
    }
  })

  it('adds a table with one call; rows written on every node end identical on all six', async () => {
    const r = await call(c.api(4), 'PUT', '/v1/cluster/replicaset/demo.t')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json.outcome).toBe('committed')
    for (const i of IDS) {
      const rows = await c.q(
        i,
        `SELECT 1 FROM pg_publication_tables WHERE pubname = 'trktr_pub' AND tablename = 't'`,
      )
      expect(rows.length, `demo.t published on node ${i}`).toBe(1)
    }
    for (const i of IDS) {
      await c.q(
        i,
        `INSERT INTO demo.t SELECT g, 'from ' || $1::int FROM generate_series($1::int * 100, $1::int * 100 + 49) g`,
        [i],
      )
    }
    expect(await c.converged(IDS, 'demo.t', 30_000)).toMatch(/^300 rows/)
  })

  it('sees a killed member dead on every node, and only it', async () => {
    const victim = 3
    c.api(victim).proc.kill('SIGKILL')
    const others = IDS.filter((i) => i !== victim)
    await waitFor(
      async () => {
        for (const i of others) if ((await stateOf(i, victim)) !== 'dead') return false
        return true
      },
      15_000,
      `node ${victim} dead on every other node`,
    )
    // and only it: the others stay alive everywhere
    for (const i of others) {
      for (const o of others) if (o !== i) expect(await stateOf(i, o), `${o} on ${i}`).toBe('alive')
    }
  })
})
