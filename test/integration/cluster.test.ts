// Mesh mode end to end: real PostgreSQL 17 servers, real arbiter processes, real libp2p on
// loopback. Three arbiters mesh from one bootstrap address; one call adds a table on all;
// a fourth node joins by starting; a proposal one node cannot accept aborts and changes
// nothing; a killed member makes commits fail fast and shows as dead, then rejoins.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type EmbeddedPostgres, startServers } from '../../src/postgres/embedded.js'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster

const T = (name: string, extra = '') =>
  `CREATE TABLE demo.${name} (id int PRIMARY KEY, payload text${extra}); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

async function published(id: number): Promise<string[]> {
  const rows = await c.q(
    id,
    `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'trktr_pub' ORDER BY 1`,
  )
  return rows.map((r) => r.t as string)
}

async function rowsOn(id: number, table: string): Promise<number[]> {
  return (await c.q(id, `SELECT id FROM demo.${table} ORDER BY id`)).map((r) => r.id as number)
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'mesh')
  for (const i of [0, 1, 2]) await c.q(i, T('t'))
  await Promise.all([0, 1, 2].map((i) => c.start(i)))
})

afterAll(async () => {
  await c?.destroy()
})

describe('mesh mode', () => {
  it('meshes three arbiters from one bootstrap address and wires every subscription', async () => {
    await c.waitMeshed([0, 1, 2])
    await c.waitSubscribed([0, 1, 2])
    const nodes = (await call(c.api(2), 'GET', '/v1/cluster/nodes')).json.nodes
    expect(nodes.map((n: { node: number }) => n.node)).toEqual([2, 0, 1])
    // the advertised connection string carries no password
    for (const n of nodes) expect(n.postgres).not.toMatch(/password/)
  })

  it('adds a table on every node with one call, and rows flow every way', async () => {
    const r = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.t')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json).toMatchObject({
      outcome: 'committed',
      op: 'add',
      relation: 'demo.t',
      version: 1,
    })
    for (const i of [0, 1, 2]) expect(await published(i)).toEqual(['demo.t'])
    // repeating it is not an error
    const again = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.t')
    expect(again.status).toBe(200)
    expect(again.json.outcome).toBe('unchanged')
    for (const i of [0, 1, 2]) await c.q(i, `INSERT INTO demo.t VALUES ($1, $2)`, [i, `from ${i}`])
    for (const i of [0, 1, 2]) {
      await waitFor(async () => (await rowsOn(i, 't')).length === 3, 10_000, `3 rows on node ${i}`)
    }
    const list = await call(c.api(2), 'GET', '/v1/cluster/replicaset')
    expect(list.json).toMatchObject({
      version: 1,
      replicaset: [{ relation: 'demo.t', status: 'committed' }],
    })
  })

  it('aborts a proposal one node cannot accept, and changes nothing anywhere', async () => {
    await c.q(0, T('bad'))
    await c.q(1, T('bad'))
    await c.q(2, T('bad', ', extra int'))
    const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.bad')
    expect(r.status).toBe(409)
    expect(r.json.outcome).toBe('aborted')
    expect(r.json.message).toMatch(/node 2: table demo\.bad differs/)
    for (const i of [0, 1, 2]) expect(await published(i)).toEqual(['demo.t'])
    const v = await call(c.api(1), 'GET', '/v1/cluster/replicaset')
    expect(v.json.version).toBe(1)
    // a table missing on one node, likewise
    await c.q(0, T('half'))
    const r2 = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.half')
    expect(r2.status).toBe(409)
    expect(r2.json.message).toMatch(/does not exist/)
    for (const i of [0, 1, 2]) expect(await published(i)).toEqual(['demo.t'])
  })

  it('answers JSON-RPC 2.0, batches and errors included', async () => {
    const rpc = (body: unknown) => call(c.api(0), 'POST', '/rpc', body)
    const one = await rpc({ jsonrpc: '2.0', id: 1, method: 'replicaset.list' })
    expect(one.json).toMatchObject({
      jsonrpc: '2.0',
      id: 1,
      result: { version: 1, replicaset: [{ relation: 'demo.t' }] },
    })
    const batch = await rpc([
      { jsonrpc: '2.0', id: 'a', method: 'cluster.nodes' },
      { jsonrpc: '2.0', id: 'b', method: 'nope' },
      { jsonrpc: '2.0', id: 'c', method: 'replicaset.add', params: { table: 'demo;drop' } },
      { jsonrpc: '2.0', method: 'cluster.status' },
    ])
    expect(batch.json).toHaveLength(3)
    const byId = Object.fromEntries(batch.json.map((x: { id: string }) => [x.id, x]))
    expect(byId.a.result.nodes).toHaveLength(3)
    expect(byId.b.error.code).toBe(-32601)
    expect(byId.c.error.code).toBe(-32602)
    const parse = await rpc('{"jsonrpc": "2.0", ')
    expect(parse.json.error.code).toBe(-32700)
    const note = await rpc({ jsonrpc: '2.0', method: 'cluster.nodes' })
    expect(note.status).toBe(204)
    const invalid = await rpc({ id: 3, method: 'cluster.nodes' })
    expect(invalid.json.error.code).toBe(-32600)
  })

  it('serves Prometheus metrics without the key', async () => {
    const r = await fetch(`${c.api(0).url}/metrics`)
    expect(r.status).toBe(200)
    const text = await r.text()
    expect(text).toMatch(/traktor_members\{state="alive"\} 2/)
    expect(text).toMatch(/traktor_proposals_total\{outcome="aborted"\} 2/)
    const coordinator = await (await fetch(`${c.api(1).url}/metrics`)).text()
    expect(coordinator).toMatch(/traktor_proposals_total\{outcome="committed"\} 1/)
    expect(coordinator).toMatch(/traktor_proposal_duration_seconds_count\{outcome="committed"\} 1/)
    expect(text).toMatch(/traktor_subscription_enabled\{subscription="trktr_sub_0_1"\} 1/)
    expect(text).toMatch(/traktor_gossip_messages_received_total\{topic="membership"\} \d+/)
    expect(text).toMatch(/traktor_build_info\{version="[^"]+",node="0"\} 1/)
  })

  it('lets a fourth node join by starting, with no other call', async () => {
    const [pg] = (await startServers(1, () => ({ name: 'mesh3', fast: true }))) as [
      EmbeddedPostgres,
    ]
    await c.addNode(3, pg)
    await c.q(3, T('t'))
    await c.start(3)
    await c.waitMeshed([0, 1, 2, 3])
    await c.waitSubscribed([0, 1, 2, 3])
    expect(await published(3)).toEqual(['demo.t'])
    await c.q(3, `INSERT INTO demo.t VALUES (30, 'from 3')`)
    await c.q(0, `INSERT INTO demo.t VALUES (31, 'from 0')`)
    for (const i of [0, 1, 2]) {
      await waitFor(async () => (await rowsOn(i, 't')).includes(30), 10_000, `row 30 on node ${i}`)
    }
    await waitFor(async () => (await rowsOn(3, 't')).includes(31), 10_000, 'row 31 on node 3')
  })

  it('sees a killed member dead within seconds, and fails commits fast with that reason', async () => {
    const killed = c.api(2)
    killed.proc.kill('SIGKILL')
    const t0 = Date.now()
    await waitFor(
      async () => {
        const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
        return nodes.find((n: { node: number }) => n.node === 2)?.state === 'dead'
      },
      10_000,
      'node 2 dead',
    )
    const detectMs = Date.now() - t0
    expect(detectMs).toBeLessThan(3000)
    for (const i of [0, 1, 2, 3]) await c.q(i, T('later'))
    const t1 = Date.now()
    const r = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.later')
    expect(Date.now() - t1).toBeLessThan(5000)
    expect(r.status).toBe(409)
    expect(r.json.message).toMatch(/node 2 is dead/)
    for (const i of [0, 1, 3]) expect(await published(i)).toEqual(['demo.t'])
  })

  it('takes a restarted arbiter back, and commits again', async () => {
    await c.node(2).arbiter?.stop()
    await c.start(2)
    await c.waitMeshed([0, 1, 2, 3])
    const r = await call(c.api(2), 'PUT', '/v1/cluster/replicaset/demo.later')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    for (const i of [0, 1, 2, 3]) expect(await published(i)).toEqual(['demo.later', 'demo.t'])
  })

  it('removes a table with one call', async () => {
    const r = await call(c.api(3), 'DELETE', '/v1/cluster/replicaset/demo.later')
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    for (const i of [0, 1, 2, 3]) expect(await published(i)).toEqual(['demo.t'])
  })
})
