// Mesh mode end to end: real PostgreSQL 17 servers, real arbiter processes, real libp2p on
// loopback. Three arbiters mesh from one bootstrap address; one call adds a table on all;
// a fourth node joins by starting; a proposal one node cannot accept aborts and changes
// nothing; a killed member makes commits fail fast and shows as dead, then rejoins.
import { spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

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

// this file drives TRAKTOR's skip path in mesh mode; row-level lww is in lww.test.ts
beforeAll(async () => {
  c = await MeshCluster.create(3, 'mesh', { resolver: 'skip' })
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
    expect(await c.converged([0, 1, 2], 'demo.t')).toMatch(/^3 rows/)
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
    // Prometheus' own linter (Debian's prometheus package; .ci/run installs it)
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
    expect(lint.error, 'promtool not installed: apt-get install prometheus').toBeUndefined()
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe('')
    expect(lint.status).toBe(0)
  })

  it('lets a fourth node join by starting, with no other call', async () => {
    const [pg] = (await startServers(1, () => ({ name: 'mesh3', fast: true }))) as [PgServer]
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

  it('refuses to half-join a node whose tables differ, and says exactly what', async () => {
    const [pg] = (await startServers(1, () => ({ name: 'mesh-misfit', fast: true }))) as [PgServer]
    await c.addNode(7, pg)
    await c.q(7, T('t', ', extra int'))
    const a = await c.start(7)
    const me = await waitFor(
      async () => {
        const nodes = (await call(a, 'GET', '/v1/cluster/nodes')).json.nodes
        return nodes.find(
          (n: { node: number; join_error?: string }) => n.node === 7 && n.join_error,
        )
      },
      15_000,
      'join error reported',
    )
    expect(me.join_state).toBe('joining')
    expect(me.join_error).toMatch(
      /table demo\.t differs: here \(id:integer, payload:text, extra:integer\)/,
    )
    // nothing half-done: no subscription either way, nothing published there
    expect(await c.q(7, 'SELECT subname FROM pg_subscription')).toEqual([])
    expect(await published(7)).toEqual([])
    for (const i of [0, 1, 2, 3]) {
      expect(
        await c.q(i, `SELECT 1 FROM pg_subscription WHERE subname = $1`, [`trktr_sub_${i}_7`]),
      ).toEqual([])
    }
    expect(await a.stop()).toBe(0)
    await pg.destroy()
    delete c.nodes[7]
  })

  it('sees a killed member dead within seconds, and fails commits fast with that reason', async () => {
    const killed = c.api(2)
    killed.proc.kill('SIGKILL')
    const t0 = Date.now()
    // by node 0, and by node 1, which coordinates the change below: each learns it on its own
    // (the node with the larger peer id redials 300 ms later, and the refused redial is the proof)
    await waitFor(
      async () => {
        for (const i of [0, 1]) {
          const nodes = (await call(c.api(i), 'GET', '/v1/cluster/nodes')).json.nodes
          if (nodes.find((n: { node: number }) => n.node === 2)?.state !== 'dead') return false
        }
        return true
      },
      10_000,
      'node 2 dead on nodes 0 and 1',
    )
    const detectMs = Date.now() - t0
    // README: a crashed arbiter's closed connection makes it suspect at once and dead after
    // suspectAfterMs (600 ms here); 2 s leaves room for a loaded CI machine
    expect(detectMs).toBeLessThan(2000)
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
    expect(r.json.outcome).toBe('committed')
    for (const i of [0, 1, 2, 3]) expect(await published(i)).toEqual(['demo.t'])
  })

  it("gossips conflict resolutions: any node shows every node's history", async () => {
    // split brain between nodes 0 and 1 on demo.t: both write id 500 while apart
    await c.cut([
      [0, 1],
      [1, 0],
    ])
    await c.q(0, `INSERT INTO demo.t VALUES (500, 'zero')`)
    await c.q(1, `INSERT INTO demo.t VALUES (500, 'one')`)
    await c.heal([
      [0, 1],
      [1, 0],
    ])
    // this file runs TRAKTOR's resolver skip: each node skips the transaction that collides
    // and records it; node 3 shows one row per conflict, with the nodes that recorded it
    const h = await waitFor(
      async () => {
        const r = await call(c.api(3), 'GET', '/v1/cluster/history')
        const res = (r.json?.resolutions ?? []) as Array<{
          node: number
          nodes?: number[]
          relation: string | null
          sql_state_code: string | null
          resolved: string | null
        }>
        const nodes = new Set(
          res
            .filter((x) => x.sql_state_code === '23505' && x.resolved)
            .flatMap((x) => x.nodes ?? [x.node]),
        )
        return nodes.has(0) && nodes.has(1) ? res : false
      },
      20_000,
      'resolutions of nodes 0 and 1 seen from node 3',
    )
    expect(h.find((x) => x.relation === 'demo.t')).toMatchObject({ action: 'skip' })
    // skip keeps each node's own row: the check says so, key by key, and a repair ends it
    expect((await c.q(0, 'SELECT payload FROM demo.t WHERE id = 500'))[0]?.payload).toBe('zero')
    expect((await c.q(1, 'SELECT payload FROM demo.t WHERE id = 500'))[0]?.payload).toBe('one')
    const check = await call(c.api(2), 'GET', '/v1/cluster/check/demo.t')
    expect(check.status, JSON.stringify(check.json)).toBe(200)
    expect(check.json.tables[0].verdict).toBe('differs')
    // (node 3 joined without the rows written before it, issue 12: ids 0-2 differ there too)
    expect(check.json.tables[0].keys.map((k: { key: { id: number } }) => k.key.id)).toContain(500)
    const fix = await call(c.api(3), 'POST', '/v1/cluster/check/demo.t/repair')
    expect(fix.status, JSON.stringify(fix.json)).toBe(200)
    expect(fix.json.after.verdict).toBe('consistent')
    await c.converged([0, 1, 2, 3], 'demo.t')
    expect((await c.q(0, 'SELECT payload FROM demo.t WHERE id = 500'))[0]?.payload).toBe('one')
  })

  it('refuses two arbiters with one nodeId, loudly, and recovers when one stops', async () => {
    const [pg] = (await startServers(1, () => ({ name: 'mesh-dup', fast: true }))) as [PgServer]
    const impostor = await c.addNode(5, pg)
    impostor.config.nodeId = 1
    c.nodes[5] = impostor
    const a = await c.start(5)
    try {
      await waitFor(
        async () => {
          const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
          return (
            nodes.filter(
              (n: { node: number; state: string }) => n.node === 1 && n.state === 'duplicate',
            ).length === 2
          )
        },
        10_000,
        'both claims of node 1 flagged duplicate',
      )
      const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.later')
      expect(r.status).toBe(409)
      expect(r.json.message).toMatch(/claimed by two arbiters/)
      await waitFor(
        () => /another arbiter claims this node id/.test(a.logs()),
        10_000,
        'the impostor says so',
      )
    } finally {
      expect(await a.stop()).toBe(0)
      await pg.destroy()
      delete c.nodes[5]
    }
    await waitFor(
      async () => {
        const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
        return nodes.some(
          (n: { node: number; state: string }) => n.node === 1 && n.state === 'alive',
        )
      },
      10_000,
      'node 1 usable again',
    )
  })

  it('keeps out an arbiter without the private-network key', async () => {
    const [pg] = (await startServers(1, () => ({ name: 'mesh-nokey', fast: true }))) as [PgServer]
    const outsider = await c.addNode(6, pg)
    const { writePskFile } = await import('../../src/mesh/keys.js')
    const otherKey = `${outsider.dir}/other.key`
    await writePskFile(otherKey)
    const a = await c.start(6, { mesh: { ...(outsider.config.mesh as object), pskFile: otherKey } })
    // for two seconds of trying (bootstrap redials every few hundred ms), it must never see
    // a member, nor be seen
    const until = Date.now() + 2000
    while (Date.now() < until) {
      const mine = (await call(a, 'GET', '/v1/cluster/nodes')).json.nodes
      expect(mine.map((n: { node: number }) => n.node)).toEqual([6])
      const theirs = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
      expect(theirs.some((n: { node: number }) => n.node === 6)).toBe(false)
    }
    expect(await a.stop()).toBe(0)
    await pg.destroy()
    delete c.nodes[6]
  })

  it('removes a node: every subscription to and from it and its slots are dropped', async () => {
    const r = await call(c.api(0), 'DELETE', '/v1/cluster/nodes/3')
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    for (const i of [0, 1, 2]) {
      await waitFor(
        async () =>
          (await c.q(i, `SELECT 1 FROM pg_subscription WHERE subname = $1`, [`trktr_sub_${i}_3`]))
            .length === 0,
        10_000,
        `node ${i} unsubscribed from 3`,
      )
      await waitFor(
        async () =>
          (
            await c.q(i, `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [
              `trktr_sub_3_${i}`,
            ])
          ).length === 0,
        10_000,
        `slot of node 3 on node ${i} dropped`,
      )
    }
    await waitFor(
      async () => (await c.q(3, `SELECT 1 FROM pg_subscription`)).length === 0,
      10_000,
      'node 3 dropped its subscriptions',
    )
    const nodes = (await call(c.api(1), 'GET', '/v1/cluster/nodes')).json.nodes
    expect(nodes.find((n: { node: number }) => n.node === 3)?.join_state).toBe('removed')
    // the cluster commits without it
    const add = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.later')
    expect(add.status, JSON.stringify(add.json)).toBe(201)
    for (const i of [0, 1, 2]) expect(await published(i)).toEqual(['demo.later', 'demo.t'])
    expect(await published(3)).toEqual(['demo.t'])
  })
})
