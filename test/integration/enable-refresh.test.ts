// A table joins while a member's subscription is disabled (an apply error waits for the
// resolver). PostgreSQL refuses to refresh a disabled subscription, and once enabled its worker
// skips, for good, a change to a table the subscription does not list. The arbiter enables it
// with the missing tables locked until the refresh has committed, so the peer's rows of the new
// table arrive. And an enabled subscription whose refresh fails (the publisher takes no new
// connection) is disabled rather than left to skip, then enabled the same guarded way.
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { call, DB, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]
const T = (name: string) =>
  `CREATE TABLE demo.${name} (id int PRIMARY KEY, note text); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

beforeAll(async () => {
  // the mesh default, lww: a duplicate key disables the subscription, the resolver arms
  // row-level resolution and enables it again
  c = await MeshCluster.create(3, 'enref')
  for (const i of IDS) await c.q(i, `${T('first')}; ${T('second')}; ${T('third')}`)
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.first')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
})

afterAll(async () => {
  await c?.destroy()
})

it('a table that joined while a subscription was disabled: its rows still arrive', async () => {
  // node 1 stops applying node 0's changes; both write key 1 of demo.first, node 1 under a
  // replication origin of its own so that its row stays there: a conflict waits in node 1's
  // stream
  await c.q(1, 'ALTER SUBSCRIPTION trktr_sub_1_0 DISABLE')
  await c.q(
    1,
    `SELECT pg_replication_origin_create('enref_local');
     SELECT pg_replication_origin_session_setup('enref_local');
     INSERT INTO demo.first VALUES (1, 'node 1');
     SELECT pg_replication_origin_session_reset();`,
  )
  await c.q(0, `INSERT INTO demo.first VALUES (1, 'node 0')`)
  // demo.second joins; node 1 cannot refresh its disabled subscription to node 0
  const r = await call(c.api(2), 'PUT', '/v1/cluster/replicaset/demo.second')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
  const listed = await c.q(
    1,
    `SELECT 1 FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid
      WHERE s.subname = 'trktr_sub_1_0' AND sr.srrelid = 'demo.second'::regclass`,
  )
  expect(listed).toHaveLength(0)
  // node 0 writes to the new table; in node 1's stream it comes after the conflict
  await c.q(0, `INSERT INTO demo.second VALUES (7, 'from node 0')`)
  // a session holds demo.second on node 1, so that whatever touches it next waits: the
  // worker's write and a refresh alike (without the guard, both go at once when it ends, and
  // the worker finds the table unlisted and skips the row)
  const holder = await c.client(1)
  try {
    await holder.query('BEGIN; LOCK TABLE demo.second IN ACCESS EXCLUSIVE MODE')
    // the operator enables it again: the conflict stops it at once, the resolver arms
    // row-level resolution and enables the subscription, with demo.second locked until the
    // refresh that lists it has committed
    await c.q(1, 'ALTER SUBSCRIPTION trktr_sub_1_0 ENABLE')
    await waitFor(
      async () =>
        (
          await c.q(
            1,
            `SELECT 1 FROM pg_locks WHERE relation = 'demo.second'::regclass AND NOT granted`,
          )
        ).length > 0,
      30_000,
      'something on node 1 waits for demo.second',
    )
    await holder.query('COMMIT')
  } finally {
    await holder.end()
  }
  await waitFor(
    async () => /row-level resolution armed/.test(c.api(1).logs()),
    30_000,
    'the resolver armed and enabled node 1 subscription',
  )
  await c.converged(IDS, 'demo.second', 30_000)
  expect((await c.q(1, 'SELECT note FROM demo.second WHERE id = 7'))[0]?.note).toBe('from node 0')
  // demo.first: the later write wins everywhere
  await c.converged(IDS, 'demo.first', 30_000)
  expect((await c.q(1, 'SELECT note FROM demo.first WHERE id = 1'))[0]?.note).toBe('node 0')
})

it('a refresh that fails on an enabled subscription: its rows of the new table still arrive', async () => {
  // node 0 takes no new replication connection (this test holds every free walsender), so
  // nodes 1 and 2 cannot refresh their subscriptions to node 0 while the streams they have go
  // on. An enabled subscription that missed its refresh would skip node 0's rows of the new
  // table for good; the arbiter disables it instead (its walsender's slot then frees, so the
  // retry, guarded, can list the table before anything is applied)
  const server = c.node(0).pg
  const held: pg.Client[] = []
  try {
    for (let n = 0; n < 64; n++) {
      const r = new pg.Client({
        host: server.host,
        port: server.port,
        database: DB,
        user: 'postgres',
        password: server.superPassword,
        replication: 'database',
      } as pg.ClientConfig)
      r.on('error', () => {})
      try {
        await r.connect()
        held.push(r)
      } catch {
        await r.end().catch(() => undefined)
        break
      }
    }
    expect(held.length).toBeGreaterThan(10)
    const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.third')
    // decided, and a member could not refresh (the first to fail disables its subscription,
    // whose walsender's slot on node 0 may then serve the other's refresh)
    expect(r.json.outcome, JSON.stringify(r.json)).toBe('committed')
    const failed = (
      r.json.nodes as Array<{ node: number; applied: boolean; reason?: string }>
    ).filter((n) => !n.applied)
    expect(failed.length, JSON.stringify(r.json)).toBeGreaterThan(0)
    for (const n of failed) expect(n.reason).toMatch(/could not connect to the publisher/)
    await c.q(0, `INSERT INTO demo.third VALUES (3, 'from node 0')`)
  } finally {
    for (const r of held) await r.end().catch(() => undefined)
  }
  await c.converged(IDS, 'demo.third', 30_000)
  for (const i of [1, 2]) {
    expect((await c.q(i, 'SELECT note FROM demo.third WHERE id = 3'))[0]?.note).toBe('from node 0')
    const [sub] = await c.q(i, `SELECT subenabled FROM pg_subscription WHERE subname = $1`, [
      `trktr_sub_${i}_0`,
    ])
    expect(sub?.subenabled).toBe(true)
  }
})
