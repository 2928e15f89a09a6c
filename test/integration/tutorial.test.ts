// The TRAKTOR tutorial, step by step, against real PostgreSQL 17 servers and real arbiter
// processes started from TRAKTOR's INI arbiter.conf: two nodes, a third added, the
// split-brain conflict resolved automatically, the table removed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type ArbiterProcess,
  call,
  freePort,
  startArbiter,
  stopAllArbiters,
  waitFor,
} from '../fixtures/arbiters.js'
import { destroyServers, type PgServer, startServers } from '../fixtures/pg.js'
import {
  arbiterConf,
  peerConninfo,
  prepareTutorialNode,
  REPTEST,
  rows,
  TUTORIAL_DB,
} from '../fixtures/tutorial.js'

const KEY = 'LetMeIn'
let pgs: PgServer[] = []
const arb: ArbiterProcess[] = []

async function startNode(i: number): Promise<ArbiterProcess> {
  const port = await freePort()
  const a = await startArbiter({
    nodeId: i,
    apiKey: KEY,
    port,
    file: 'arbiter.conf',
    text: arbiterConf(i, (pgs[i] as PgServer).port, port, 0.5),
  })
  arb[i] = a
  return a
}

const q = (i: number, sql: string, params: unknown[] = []) =>
  (pgs[i] as PgServer).query(sql, params, { dbname: TUTORIAL_DB })
const A = (i: number) => arb[i] as ArbiterProcess

beforeAll(async () => {
  pgs = await startServers(3, (i) => ({ name: `tutorial${i}`, fast: true }))
  await Promise.all(pgs.map(prepareTutorialNode))
})

afterAll(async () => {
  await stopAllArbiters()
  await destroyServers(pgs)
})

describe('the TRAKTOR tutorial', () => {
  it('initialises two nodes and subscribes them to each other', async () => {
    await Promise.all([startNode(0), startNode(1)])
    for (const i of [0, 1]) {
      expect((await call(A(i), 'PUT', '/v1/arbiter/control')).status).toBe(201)
      // the arbiter gives up SUPERUSER right after initialising, as TRAKTOR does
      const [role] = await q(i, `SELECT rolsuper FROM pg_roles WHERE rolname = 'traktor_arbiter'`)
      expect(role?.rolsuper).toBe(false)
    }
    const s0 = await call(A(0), 'PUT', '/v1/arbiter/subscription/control', {
      inbound_node: 1,
      connection_string: peerConninfo((pgs[1] as PgServer).port),
    })
    expect(s0.status).toBe(201)
    const s1 = await call(A(1), 'PUT', '/v1/arbiter/subscription/control', {
      inbound_node: 0,
      connection_string: peerConninfo((pgs[0] as PgServer).port),
    })
    expect(s1.status).toBe(201)
    expect(await q(0, 'SELECT subname FROM pg_subscription')).toEqual([
      { subname: 'trktr_sub_0_1' },
    ])
    expect(await q(1, 'SELECT subname FROM pg_subscription')).toEqual([
      { subname: 'trktr_sub_1_0' },
    ])
  })

  it('replicates multimaster.reptest both ways after PUT + PATCH on both nodes', async () => {
    for (const i of [0, 1]) await q(i, REPTEST)
    for (const i of [0, 1]) {
      expect((await call(A(i), 'PUT', '/v1/arbiter/replicaset/multimaster.reptest')).status).toBe(
        201,
      )
    }
    const staged = await call(A(1), 'GET', '/v1/arbiter/replicaset/status')
    expect(staged.json).toEqual({
      node: 1,
      replicaset: [{ relation: 'multimaster.reptest', status: 'pending-add' }],
    })
    for (const i of [0, 1])
      expect((await call(A(i), 'PATCH', '/v1/arbiter/replicaset')).status).toBe(200)
    const status = await call(A(1), 'GET', '/v1/arbiter/replicaset/status')
    expect(status.json).toEqual({
      node: 1,
      replicaset: [{ relation: 'multimaster.reptest', status: 'committed' }],
    })
    // both subscriptions must have picked up the table before the first write
    for (const i of [0, 1]) {
      await waitFor(
        async () => (await q(i, 'SELECT count(*)::int AS n FROM pg_subscription_rel'))[0]?.n === 1,
        10_000,
        `node ${i} subscription refreshed`,
      )
    }
    await q(0, `INSERT INTO multimaster.reptest (id, payload) VALUES (0, 'Hello')`)
    await q(1, `INSERT INTO multimaster.reptest (id, payload) VALUES (1, 'TRAKTOR')`)
    const want = [
      { id: 0, payload: 'Hello' },
      { id: 1, payload: 'TRAKTOR' },
    ]
    for (const i of [0, 1]) {
      await waitFor(
        async () => JSON.stringify(await rows(pgs[i] as PgServer)) === JSON.stringify(want),
        10_000,
        `rows on node ${i}`,
      )
    }
  })

  it('extends the cluster with a third node', async () => {
    await q(2, REPTEST)
    await startNode(2)
    expect((await call(A(2), 'PUT', '/v1/arbiter/control')).status).toBe(201)
    const port = (i: number) => (pgs[i] as PgServer).port
    for (const peer of [1, 0]) {
      const r = await call(A(2), 'PUT', '/v1/arbiter/subscription/control', {
        inbound_node: peer,
        connection_string: peerConninfo(port(peer)),
      })
      expect(r.status).toBe(201)
    }
    for (const i of [0, 1]) {
      const r = await call(A(i), 'PUT', '/v1/arbiter/subscription/control', {
        inbound_node: 2,
        connection_string: peerConninfo(port(2)),
      })
      expect(r.status).toBe(201)
    }
    expect((await call(A(2), 'PUT', '/v1/arbiter/replicaset/multimaster.reptest')).status).toBe(201)
    expect((await call(A(2), 'PATCH', '/v1/arbiter/replicaset')).status).toBe(200)
    // nodes 0 and 1 refresh their new subscriptions to node 2 when node 2's arbiter commits
    for (const i of [0, 1]) {
      await waitFor(
        async () => (await q(i, 'SELECT count(*)::int AS n FROM pg_subscription_rel'))[0]?.n === 2,
        10_000,
        `node ${i} refreshed from node 2`,
      )
    }
    await waitFor(
      async () => (await q(2, 'SELECT count(*)::int AS n FROM pg_subscription_rel'))[0]?.n === 2,
      10_000,
      'node 2 subscriptions',
    )
    await q(2, `INSERT INTO multimaster.reptest (id, payload) VALUES (2, 'Hello, Node 2')`)
    await q(0, `INSERT INTO multimaster.reptest (id, payload) VALUES (3, 'Hello again, Node 2')`)
    const all = [0, 1, 2, 3]
    for (const i of [0, 1]) {
      await waitFor(
        async () =>
          JSON.stringify((await rows(pgs[i] as PgServer)).map((r) => r.id)) === JSON.stringify(all),
        10_000,
        `node ${i} rows`,
      )
    }
    // the rows, not just their ids: nodes 0 and 1 hold the same (node 2 joined without data)
    expect(await rows(pgs[0] as PgServer)).toEqual(await rows(pgs[1] as PgServer))
    await waitFor(
      async () =>
        JSON.stringify(await rows(pgs[2] as PgServer)) ===
        JSON.stringify([
          { id: 2, payload: 'Hello, Node 2' },
          { id: 3, payload: 'Hello again, Node 2' },
        ]),
      10_000,
      'node 2 rows',
    )
  })

  it('resolves the split-brain conflict automatically and records it', async () => {
    const [p0, p1] = pgs as [PgServer, PgServer]
    await p0.stop()
    await q(1, `INSERT INTO multimaster.reptest (id, payload) VALUES (5, 'Oh no!')`)
    await p1.stop()
    await p0.start()
    await q(0, `INSERT INTO multimaster.reptest (id, payload) VALUES (5, 'A conflict!')`)
    await p1.start()
    for (const i of [0, 1]) {
      const h = await waitFor(
        async () => {
          const r = await call(A(i), 'GET', '/v1/arbiter/resolution/history')
          const res = r.json?.resolutions as Array<Record<string, unknown>> | undefined
          return res?.find((x) => x.resolved !== null && x.sql_state_code === '23505')
            ? r.json
            : false
        },
        30_000,
        `node ${i} resolution`,
      )
      const row = h.resolutions.find(
        (x: { sql_state_code: string }) => x.sql_state_code === '23505',
      )
      expect(row).toMatchObject({
        relation: 'multimaster.reptest',
        subscription: `trktr_sub_${i}_${1 - i}`,
        reason: 'Key (id)=(5) already exists.',
      })
      expect(row.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
    }
    // local write wins on each side; every subscription runs again
    expect((await rows(p0)).find((r) => r.id === 5)?.payload).toBe('A conflict!')
    expect((await rows(p1)).find((r) => r.id === 5)?.payload).toBe('Oh no!')
    for (const i of [0, 1, 2]) {
      await waitFor(
        async () =>
          (await q(i, 'SELECT bool_and(subenabled) AS ok FROM pg_subscription'))[0]?.ok === true,
        30_000,
        `node ${i} subscriptions enabled`,
      )
      // a subscription runs again a moment before the resolver's next pass marks its
      // conflict resolved: the status settles on both within seconds
      const s = await waitFor(
        async () => {
          const r = await call(A(i), 'GET', '/v1/arbiter/status')
          return r.json?.is_replicating && r.json.conflicts_pending === 0 ? r.json : false
        },
        10_000,
        `node ${i} status: replicating, no conflict pending`,
      )
      expect(s).toMatchObject({ node: i, is_replicating: true, conflicts_pending: 0 })
      expect(s.server_version).toBeGreaterThanOrEqual(17)
      expect(typeof s.replication_lag_ms).toBe('number')
    }
    const s0 = (await call(A(0), 'GET', '/v1/arbiter/status')).json
    expect(s0).toMatchObject({ is_tainted: true })
    expect(s0.conflicts_resolved).toBeGreaterThanOrEqual(1)
    // replication goes on after the resolution
    await q(1, `INSERT INTO multimaster.reptest (id, payload) VALUES (6, 'after')`)
    for (const i of [0, 2]) {
      await waitFor(
        async () => (await rows(pgs[i] as PgServer)).some((r) => r.id === 6),
        15_000,
        `row 6 on node ${i}`,
      )
    }
  })

  it('removes the table from the replicaset', async () => {
    for (const i of [0, 1, 2]) {
      expect(
        (await call(A(i), 'DELETE', '/v1/arbiter/replicaset/multimaster.reptest')).status,
      ).toBe(200)
    }
    for (const i of [0, 1, 2])
      expect((await call(A(i), 'PATCH', '/v1/arbiter/replicaset')).status).toBe(200)
    for (const i of [0, 1, 2]) {
      expect((await call(A(i), 'GET', '/v1/arbiter/replicaset/status')).json).toEqual({
        node: i,
        replicaset: [],
      })
    }
    // the same key on every node, no collision
    for (const i of [0, 1, 2])
      await q(i, `INSERT INTO multimaster.reptest (id, payload) VALUES (100, $1)`, [`n${i}`])
    for (const i of [0, 1, 2]) {
      expect((await rows(pgs[i] as PgServer)).find((r) => r.id === 100)?.payload).toBe(`n${i}`)
    }
    for (const i of [0, 1, 2]) {
      const s = (await call(A(i), 'GET', '/v1/arbiter/status')).json
      expect(s.is_replicating).toBe(true)
    }
  })

  it('stops every arbiter cleanly (exit 0)', async () => {
    for (const i of [0, 1, 2]) expect(await A(i).stop()).toBe(0)
  })
})
