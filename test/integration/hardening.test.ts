// Issue 8: ways a hostile user or a careless operator broke a healthy mesh, each closed and
// kept closed here (real PostgreSQL 17, real arbiter processes, real libp2p):
//   #2 a table that cannot be published is refused before any commit, everywhere;
//   #3 the write fence cannot be stalled by another role's lock, and a node that cannot fence
//      the table (a long transaction writing to it) aborts the change everywhere;
//   #5 node routes that change state refuse in mesh mode, naming the cluster route;
//   #6 a publication dropped or changed by hand is repaired, said loudly, and the peers
//      subscribe anew so that replication from that node goes on.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, DB, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]

const T = (name: string, opts = '') =>
  `CREATE ${opts} TABLE demo.${name} (id int PRIMARY KEY, payload text); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

async function published(id: number): Promise<string[]> {
  const rows = await c.q(
    id,
    `SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'trktr_pub' ORDER BY 1`,
  )
  return rows.map((r) => r.t as string)
}

async function versions(): Promise<number[]> {
  return await Promise.all(
    IDS.map(async (i) => (await call(c.api(i), 'GET', '/v1/cluster/replicaset')).json.version),
  )
}

async function openProposals(id: number): Promise<number> {
  const [r] = await c.q(id, `SELECT count(*)::int AS n FROM trktr.proposals WHERE decision IS NULL`)
  return r?.n as number
}

/** A client of its own on a node's database, as a user (superuser by default). */
async function client(id: number, user = 'postgres', password?: string): Promise<pg.Client> {
  const node = c.node(id)
  const cl = new pg.Client({
    host: '127.0.0.1',
    port: node.pg.port,
    database: DB,
    user,
    password: password ?? node.pg.superPassword,
  })
  await cl.connect()
  return cl
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'harden')
  for (const i of IDS) {
    for (const t of ['t', 'ok1', 'ok2', 'fenced', 'longtx']) await c.q(i, T(t))
    await c.q(i, T('unlogged_t', 'UNLOGGED'))
    // a schema the arbiter role may not use, holding a table it owns
    await c.q(i, `CREATE SCHEMA hidden; ${T('x').replaceAll('demo.x', 'hidden.x')}`)
    await c.q(i, `REVOKE ALL ON SCHEMA hidden FROM PUBLIC`)
    await c.q(i, `CREATE ROLE mallory LOGIN PASSWORD 'mallory'`)
    await c.q(
      i,
      `GRANT USAGE ON SCHEMA demo TO mallory; GRANT ALL ON ALL TABLES IN SCHEMA demo TO mallory`,
    )
  }
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.t')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
})

afterAll(async () => {
  await c?.destroy()
})

describe('issue 8 #2: a table that cannot be published is refused, not committed', () => {
  for (const [table, why] of [
    ['demo.unlogged_t', /UNLOGGED/],
    ['hidden.x', /no USAGE on schema/],
  ] as const) {
    it(`${table}: 409 aborted with every node's reason, nothing changed anywhere`, async () => {
      const before = await versions()
      const r = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/${table}`)
      expect(r.status, JSON.stringify(r.json)).toBe(409)
      expect(r.json.outcome).toBe('aborted')
      const refusals = r.json.nodes.filter((n: { ack: boolean }) => !n.ack)
      expect(refusals.length).toBeGreaterThanOrEqual(1)
      for (const n of refusals) expect(n.reason).toMatch(why)
      expect(r.json.message).toMatch(/node 1:/)
      for (const i of IDS) {
        expect(await published(i)).toEqual(['demo.t'])
        expect(await openProposals(i)).toBe(0)
      }
      expect(await versions()).toEqual(before)
    })
  }

  it('never reuses a version number: the next good change takes the next version', async () => {
    const before = await versions()
    const r = await call(c.api(2), 'PUT', '/v1/cluster/replicaset/demo.ok1')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json.version).toBe((before[0] as number) + 1)
    await waitFor(
      async () => (await versions()).every((v) => v === r.json.version),
      5000,
      'versions',
    )
    const ids = await c.q(0, `SELECT version FROM trktr.proposals WHERE decision = 'commit'`)
    const used = ids.map((x) => x.version as number)
    expect(new Set(used).size).toBe(used.length)
  })
})

describe('issue 8 #3: the write fence', () => {
  it("another role's advisory lock on the fence's old key stalls nothing", async () => {
    const m = await client(0, 'mallory', 'mallory')
    try {
      const [oid] = (await m.query(`SELECT 'demo.fenced'::regclass::oid::int AS oid`)).rows
      await m.query(`SELECT pg_advisory_lock(29810, $1)`, [oid.oid])
      // the fence's own row is out of reach for other roles
      await expect(m.query(`SELECT * FROM trktr.fences FOR UPDATE`)).rejects.toThrow(
        /permission denied/,
      )
      const started = Date.now()
      const r = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.fenced')
      expect(r.status, JSON.stringify(r.json)).toBe(201)
      expect(Date.now() - started).toBeLessThan(5000)
      // mallory's writes still pass (the fence is down) and replicate
      await m.query(`INSERT INTO demo.fenced VALUES (1, 'mallory')`)
    } finally {
      await m.end()
    }
    await c.converged(IDS, 'demo.fenced')
  })

  it('a node that cannot fence the table (a long transaction writing to it) aborts the change everywhere', async () => {
    const long = await client(2)
    try {
      await long.query('BEGIN')
      await long.query(`INSERT INTO demo.longtx VALUES (42, 'long transaction on node 2')`)
      const before = await versions()
      const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.longtx')
      expect(r.status, JSON.stringify(r.json)).toBe(409)
      const node2 = r.json.nodes.find((n: { node: number }) => n.node === 2)
      expect(node2.ack).toBe(false)
      expect(node2.reason).toMatch(/node 2: cannot fence demo.longtx/)
      for (const i of IDS) {
        expect(await published(i)).not.toContain('demo.longtx')
        expect(await openProposals(i)).toBe(0)
        // no fence left behind anywhere: a write goes through at once
        const [t] = await c.q(
          i,
          `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'trktr_fence'`,
        )
        expect(t?.n, `fence trigger left on node ${i}`).toBe(0)
      }
      expect(await versions()).toEqual(before)
      await long.query('ROLLBACK')
    } finally {
      await long.end()
    }
    // once the transaction is gone, the same change commits, and rows flow every way
    const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.longtx')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    for (const i of IDS) await c.q(i, `INSERT INTO demo.longtx VALUES ($1, $2)`, [i, `n${i}`])
    expect(await c.converged(IDS, 'demo.longtx')).toMatch(/^3 rows/)
  })
})

describe('issue 8 #5: node routes refuse in mesh mode', () => {
  it('every node route that changes state answers 409 naming the cluster route, and changes nothing', async () => {
    const snapshot = async () =>
      JSON.stringify([
        await c.q(1, `SELECT subname, subconninfo, subenabled FROM pg_subscription ORDER BY 1`),
        await published(1),
        await c.q(1, `SELECT * FROM trktr.replicaset ORDER BY 1, 2`),
      ])
    const before = await snapshot()
    const attempts: Array<[string, string, unknown]> = [
      ['PUT', '/v1/arbiter/control', undefined],
      ['DELETE', '/v1/arbiter/control', undefined],
      [
        'PUT',
        '/v1/arbiter/subscription/control',
        { inbound_node: 0, connection_string: 'host=127.0.0.1 port=1 dbname=x user=y' },
      ],
      ['DELETE', '/v1/arbiter/subscription/control', { inbound_node: 0 }],
      ['PUT', '/v1/arbiter/replicaset/demo.ok2', undefined],
      ['DELETE', '/v1/arbiter/replicaset/demo.t', undefined],
      ['PATCH', '/v1/arbiter/replicaset', undefined],
    ]
    for (const [method, route, body] of attempts) {
      const r = await call(c.api(1), method, route, body)
      expect(r.status, `${method} ${route}`).toBe(409)
      expect(r.json.error).toBe('ERR_MESH_MODE')
      expect(r.json.message).toMatch(/mesh mode/)
    }
    const put = await call(c.api(1), 'PUT', '/v1/arbiter/replicaset/demo.ok2')
    expect(put.json.message).toMatch(/\/v1\/cluster\/replicaset/)
    expect(await snapshot()).toBe(before)
    // reading stays allowed
    expect((await call(c.api(1), 'GET', '/v1/arbiter/status')).status).toBe(200)
  })
})

describe('issue 8 #6: a publication changed by hand', () => {
  it('dropped: re-created with the replicated tables, said loudly, and the peers subscribe anew', async () => {
    const subOid = async (i: number) =>
      (
        await c.q(
          i,
          `SELECT oid::int8 AS oid, subenabled FROM pg_subscription WHERE subname = $1`,
          [`trktr_sub_${i}_1`],
        )
      )[0] as { oid: string; subenabled: boolean } | undefined
    const oldOids = await Promise.all([0, 2].map(async (i) => (await subOid(i))?.oid))
    await c.q(1, `DROP PUBLICATION trktr_pub`)
    await waitFor(
      async () => (await published(1)).includes('demo.t'),
      10_000,
      'publication re-created on node 1',
    )
    const health = await waitFor(
      async () => {
        const h = await call(c.api(1), 'GET', '/healthz')
        return h.status === 503 ? h.json : false
      },
      5000,
      'node 1 degraded',
    )
    expect(health.reasons.join(' ')).toMatch(/publication trktr_pub was dropped/)
    const status = (await call(c.api(0), 'GET', '/v1/cluster/status')).json
    expect(status.healthy).toBe(false)
    expect(status.reasons.join(' ')).toMatch(/node 1.*publication trktr_pub was dropped/)
    // the peers made their subscriptions to node 1 anew (the old slots can never stream again)
    await waitFor(
      async () => {
        const now = await Promise.all([0, 2].map(subOid))
        return now.every((s, k) => s?.subenabled && s.oid !== oldOids[k])
      },
      20_000,
      'nodes 0 and 2 subscribed anew to node 1',
    )
    // replication from node 1 goes on: a row written there now reaches every node
    await c.q(1, `INSERT INTO demo.t VALUES (1001, 'after the repair')`)
    await waitFor(
      async () =>
        (
          await Promise.all([0, 2].map((i) => c.q(i, `SELECT 1 FROM demo.t WHERE id = 1001`)))
        ).every((r) => r.length === 1),
      20_000,
      'row from node 1 on nodes 0 and 2',
    )
    for (const i of IDS) await c.q(i, `INSERT INTO demo.t VALUES ($1, 'every way')`, [2000 + i])
    expect(await c.converged(IDS, 'demo.t')).toMatch(/^4 rows/)
  })

  it('a replicated table dropped from it by hand is put back', async () => {
    await c.q(2, `ALTER PUBLICATION trktr_pub DROP TABLE demo.ok1`)
    await waitFor(
      async () => (await published(2)).includes('demo.ok1'),
      10_000,
      'demo.ok1 back in node 2 publication',
    )
    const h = await call(c.api(2), 'GET', '/healthz')
    expect(h.status).toBe(503)
    expect(h.json.reasons.join(' ')).toMatch(/demo.ok1 were taken out of the publication/)
  })
})
