// A table that holds rows before it joins the replicaset — the common case of a table whose
// rows were written on one node first. Rows on some nodes only are copied to the nodes where
// the table is empty, behind the write fence, before the table is published: every node holds
// them, and later changes to them apply everywhere. Different rows on two nodes are merged
// right after the table joined (a repair: each key's last writer). Before this, the table joined as it was:
// its rows stayed on one node for good, changes to them were skipped by every peer, and status
// said healthy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, MeshCluster, saveLogsOnFailure, TESTING_ENV } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]
const N = 2000
const table = (t: string) =>
  `CREATE TABLE demo.${t} (id bigserial PRIMARY KEY, v text, j jsonb, b bytea, n numeric);
   ALTER TABLE demo.${t} OWNER TO traktor_arbiter`
const fill = (t: string, from: number, to: number, v: string) =>
  `INSERT INTO demo.${t} (id, v, j, b, n)
   SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE ${`'${v}'`} || g END, jsonb_build_object('g', g, 'q', 'it''s'),
          CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END, g / 3.0
   FROM generate_series(${from}, ${to}) g`

beforeAll(async () => {
  c = await MeshCluster.create(3, 'addrows', {})
  for (const i of IDS)
    for (const t of ['one', 'two', 'mixed', 'big', 'bigs']) await c.q(i, table(t))
  // 'one': rows on node 1 only; 'two': the same rows on nodes 0 and 2; 'mixed': different rows
  await c.q(1, fill('one', 1, N, 'a'))
  for (const i of [0, 2]) await c.q(i, fill('two', 1, 50, 'b'))
  await c.q(0, fill('mixed', 1, 5, 'x'))
  await c.q(1, fill('mixed', 3, 8, 'y'))
  // too many rows to hash in the time the test hook gives (testing.contentHashMs)
  await c.q(0, fill('big', 1, 5000, 'b'))
  for (const i of [0, 1]) await c.q(i, fill('bigs', 1, 5000, 'b'))
  await c.q(1, `UPDATE demo.bigs SET v = 'other' WHERE id IN (10, 20, 30)`)
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
}, 180_000)

afterAll(async () => {
  await c?.destroy()
})

saveLogsOnFailure(() => c, 'add-rows')

describe('a table that holds rows when it joins the replicaset', () => {
  it('copies the rows of the one node that holds them to every other, and later changes apply everywhere', async () => {
    const before = await c.md5(1, 'demo.one')
    const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.one')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json.copied).toEqual({ from: 1, rows: N })
    // identical at once: the copy is done before the call answers
    for (const i of IDS) expect(await c.md5(i, 'demo.one'), `node ${i}`).toBe(before)
    expect(before).toMatch(new RegExp(`^${N} rows`))
    // copied rows take later changes from any node, and new ids do not collide with them
    await c.q(0, `UPDATE demo.one SET v = 'from 0' WHERE id <= 10`)
    await c.q(2, `DELETE FROM demo.one WHERE id BETWEEN 11 AND 20`)
    await c.q(1, `UPDATE demo.one SET n = -1 WHERE id BETWEEN 21 AND 30`)
    for (const i of IDS)
      await c.q(i, `INSERT INTO demo.one (v) SELECT 'new ${i}' FROM generate_series(1, 5)`)
    const md5 = await c.converged(IDS, 'demo.one')
    expect(md5).toMatch(new RegExp(`^${N - 10 + 15} rows`))
    const [u] = await c.q(2, `SELECT count(*)::int AS n FROM demo.one WHERE v = 'from 0' OR n = -1`)
    expect(u?.n).toBe(20)
    const s = await call(c.api(2), 'GET', '/v1/cluster/status')
    expect(s.json.healthy, JSON.stringify(s.json.reasons)).toBe(true)
  })

  it('copies the rows the nodes that hold them share to the empty node only', async () => {
    const r = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.two')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json.copied).toEqual({ from: 0, rows: 50 })
    await c.q(1, `UPDATE demo.two SET v = 'later' WHERE id = 1`)
    expect(await c.converged(IDS, 'demo.two')).toMatch(/^50 rows/)
  })

  it('merges different rows on two nodes: every key holds its last writer’s row everywhere', async () => {
    // node 0 wrote keys 1-5, node 1 keys 3-8 after it: 3-5 are node 1's
    const r = await call(c.api(2), 'PUT', '/v1/cluster/replicaset/demo.mixed')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    expect(r.json.merged).toEqual({
      why: 'demo.mixed holds different rows on different nodes (node 0: 5 rows, node 1: 6 rows, node 2: empty)',
      repaired_rows: 8,
      verdict: 'consistent',
    })
    expect(await c.converged(IDS, 'demo.mixed')).toMatch(/^8 rows/)
    const rows = await c.q(2, `SELECT id::int, v FROM demo.mixed ORDER BY id`)
    expect(rows.map((x) => `${x.id}:${x.v}`)).toEqual([
      '1:x1',
      '2:x2',
      '3:y3',
      '4:y4',
      '5:y5',
      '6:y6',
      '7:null',
      '8:y8',
    ])
    await c.q(0, `UPDATE demo.mixed SET v = 'later' WHERE id = 1`)
    await c.converged(IDS, 'demo.mixed')
    const s = await call(c.api(0), 'GET', '/v1/cluster/status')
    expect(s.json.healthy, JSON.stringify(s.json.reasons)).toBe(true)
  })

  it('a table too big to hash at once: copied from the one node that holds it, or checked', async () => {
    // every arbiter hashes for 1 ms only: the hash of 5,000 rows gives up
    for (const i of IDS) {
      await c.node(i).arbiter?.stop()
      await c.start(i, { testing: { contentHashMs: 1 } }, TESTING_ENV)
    }
    await c.waitMeshed(IDS)
    await c.waitSubscribed(IDS)
    // one node holds it, the others are empty: copied without the hash (no count to show)
    const one = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.big')
    expect(one.status, JSON.stringify(one.json)).toBe(201)
    expect(one.json.copied).toEqual({ from: 0 })
    expect(await c.converged(IDS, 'demo.big')).toMatch(/^5000 rows/)
    // two nodes hold different rows: not compared, nothing merged, and health names the table
    const two = await call(c.api(1), 'PUT', '/v1/cluster/replicaset/demo.bigs')
    expect(two.status, JSON.stringify(two.json)).toBe(201)
    expect(two.json.merged).toBeUndefined()
    await c.differenceShown(2, 'demo.bigs')
    expect(await c.repaired(0, IDS, 'demo.bigs')).toMatch(/^5000 rows/)
  }, 120_000)
})
