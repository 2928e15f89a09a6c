// Issue 10, tables beyond a plain key. Conflicts on a unique index besides the primary key (a
// users table's unique email): two nodes insert the same email under different keys, or update
// two rows to the same email, while partitioned. The rest of each transaction applies, every
// node keeps the later writer's row, the losing row is in the ledger with both versions. A
// partial unique index, which row-level resolution does not take, ends in a skipped
// transaction — and the cluster's health names the table at once (the check can fail). A
// partitioned table, and a partition made later (replicated at once, with its table). A
// TRUNCATE racing inserts on another node, which no row-level rule can take: health names the
// table within seconds, and a repair makes it identical.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, MeshCluster, saveLogsOnFailure, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]
const K = 5
const M = 20
const own = (t: string) => `; ALTER TABLE demo.${t} OWNER TO traktor_arbiter`
const TABLES = [
  `CREATE TABLE demo.users (id int PRIMARY KEY, email text UNIQUE, v text)${own('users')}`,
  // composite, NULLS NOT DISTINCT: two NULLs collide
  `CREATE TABLE demo.pairs (id int PRIMARY KEY, a int, b int, v text, UNIQUE NULLS NOT DISTINCT (a, b))${own('pairs')}`,
  `CREATE TABLE demo.part (id int PRIMARY KEY, email text, v text)${own('part')};
   CREATE UNIQUE INDEX part_email ON demo.part (email) WHERE email IS NOT NULL`,
  `CREATE TABLE demo.sales (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
   CREATE TABLE demo.sales_eu PARTITION OF demo.sales FOR VALUES IN ('eu');
   CREATE TABLE demo.sales_us PARTITION OF demo.sales FOR VALUES IN ('us')
   ${own('sales')}${own('sales_eu')}${own('sales_us')}`,
  `CREATE TABLE demo.staging (id int PRIMARY KEY, v text)${own('staging')}`,
]

async function add(table: string): Promise<void> {
  const r = await call(c.api(0), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
  expect(r.status, JSON.stringify(r.json)).toBe(201)
}

type Row = Record<string, any>
async function ledger(table: string, want: (rows: Row[]) => boolean): Promise<Row[]> {
  return await waitFor(
    async () => {
      const r = await call(c.api(2), 'GET', '/v1/cluster/history')
      const rows = (r.json.resolutions as Row[]).filter(
        (x) => x.action === 'lww' && x.relation === `demo.${table}`,
      )
      return want(rows) ? rows : undefined
    },
    15_000,
    `the ledger of demo.${table}`,
  )
}

async function noSkip(): Promise<void> {
  for (const i of IDS) {
    const [s] = await c.q(i, `SELECT bool_and(subenabled) AS ok FROM pg_subscription`)
    expect(s?.ok).toBe(true)
    const [h] = await c.q(i, `SELECT count(*)::int AS n FROM trktr.history WHERE action = 'skip'`)
    expect(h?.n, `skips on node ${i}`).toBe(0)
  }
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'lwwuniq', {})
  for (const i of IDS) for (const t of TABLES) await c.q(i, t)
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  for (const t of ['users', 'pairs', 'part', 'sales', 'staging']) await add(t)
}, 180_000)

afterAll(async () => {
  await c?.destroy()
})

saveLogsOnFailure(() => c, 'lww-tables')

describe('issue 10: conflicts on a unique index besides the key', () => {
  it(`insert-insert on a unique email: ${K} emails under different keys, ${M} clean rows per side`, async () => {
    await c.cut(MeshCluster.pairs(IDS))
    // node 0 first, node 1 later on every email; NULL emails never collide
    const tx = (id: number, base: number, v: string) =>
      c.q(
        id,
        `INSERT INTO demo.users (id, email, v)
         SELECT $1::int + g, 'user' || g || '@example.org', $2 FROM generate_series(1, $3::int) g
         UNION ALL SELECT $1::int + 100 + g, NULL, 'null ' || $2 FROM generate_series(1, 2) g
         UNION ALL SELECT $1::int + 1000 + g, $2 || g || '@clean', 'clean' FROM generate_series(1, $4::int) g`,
        [base, v, K, M],
      )
    await tx(0, 10_000, 'a')
    await new Promise((r) => setTimeout(r, 20))
    await tx(1, 20_000, 'b')
    await c.heal(MeshCluster.pairs(IDS))
    const md5 = await c.converged(IDS, 'demo.users', 30_000)
    // K emails once each (node 1's rows), 2 NULL-email rows and M clean rows from each side
    expect(md5).toMatch(new RegExp(`^${K + 4 + 2 * M} rows`))
    for (const i of IDS) {
      const rows = await c.q(
        i,
        `SELECT id, v FROM demo.users WHERE email LIKE 'user%' ORDER BY email`,
      )
      expect(
        rows.map((r) => r.v),
        `node ${i}`,
      ).toEqual(Array(K).fill('b'))
      expect(rows.every((r) => (r.id as number) > 20_000)).toBe(true)
    }
    await noSkip()
    const rows = await ledger('users', (rs) => rs.length >= K)
    for (let g = 1; g <= K; g++) {
      const r = rows.find((x) => JSON.parse(x.key).email === `user${g}@example.org`)
      if (!r) throw new Error(`no resolution for user${g}@example.org`)
      expect(r.kind).toBe('insert_exists')
      expect(r.winner.node).toBe(1)
      expect(r.winner.image.id).toBe(20_000 + g)
      expect(r.loser.node).toBe(0)
      expect(r.loser.image.id).toBe(10_000 + g)
      expect(r.loser.ts < r.winner.ts).toBe(true)
    }
  })

  it('update-update to one email on two rows: the later row keeps it, the other is removed and recorded', async () => {
    await c.q(
      0,
      `INSERT INTO demo.users (id, email, v) VALUES (1, 'one@x', 'r1'), (2, 'two@x', 'r2')`,
    )
    await c.converged(IDS, 'demo.users')
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(0, `UPDATE demo.users SET email = 'same@x', v = 'by 0' WHERE id = 1`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(1, `UPDATE demo.users SET email = 'same@x', v = 'by 1' WHERE id = 2`)
    await c.heal(MeshCluster.pairs(IDS))
    await c.converged(IDS, 'demo.users', 30_000)
    for (const i of IDS) {
      const rows = await c.q(i, `SELECT id, email, v FROM demo.users WHERE id IN (1, 2)`)
      expect(rows, `node ${i}`).toEqual([{ id: 2, email: 'same@x', v: 'by 1' }])
    }
    await noSkip()
    const rows = await ledger('users', (rs) => rs.some((x) => JSON.parse(x.key).email === 'same@x'))
    const r = rows.find((x) => JSON.parse(x.key).email === 'same@x') as Row
    expect(r.kind).toBe('update_exists')
    expect([r.winner.node, r.winner.image.id]).toEqual([1, 2])
    expect([r.loser.node, r.loser.image.id]).toEqual([0, 1])
  })

  it('an update of a displaced row that arrives before the round: health names the table within seconds, a repair makes it identical', async () => {
    const holds = async (i: number, sql: string, want: unknown) =>
      waitFor(
        async () => JSON.stringify(await c.q(i, sql)) === JSON.stringify(want),
        30_000,
        `node ${i}: ${sql} = ${JSON.stringify(want)}`,
      )
    // an insert conflict on the email arms node 0's insert branch (for 30 s)
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(0, `INSERT INTO demo.users (id, email, v) VALUES (40, 'arm@x', 'a')`)
    await c.q(1, `INSERT INTO demo.users (id, email, v) VALUES (41, 'arm@x', 'b')`)
    await c.heal(MeshCluster.pairs(IDS))
    await c.converged(IDS, 'demo.users', 30_000)
    // node 1's row S takes an email first, node 0's R later (R wins). Node 0's arbiter is down,
    // so no round runs there while R is out of S's way; node 2 updates R meanwhile: node 0 has
    // no R to update and skips it, and its round then puts back R's older version
    await c.api(0).stop()
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(1, `INSERT INTO demo.users (id, email, v) VALUES (31, 'race@x', 's')`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(0, `INSERT INTO demo.users (id, email, v) VALUES (30, 'race@x', 'r')`)
    await c.heal(MeshCluster.pairs(IDS))
    const race = `SELECT id, v FROM demo.users WHERE id IN (30, 31) ORDER BY id`
    await holds(0, race, [{ id: 31, v: 's' }])
    for (const i of [1, 2]) await holds(i, race, [{ id: 30, v: 'r' }])
    await c.q(2, `UPDATE demo.users SET v = 'moved on' WHERE id = 30`)
    await c.q(2, `INSERT INTO demo.staging VALUES (500, 'after the update')`)
    await holds(1, race, [{ id: 30, v: 'moved on' }])
    // node 0 applied node 2's transactions up to the marker: the update was skipped there
    await holds(0, `SELECT v FROM demo.staging WHERE id = 500`, [{ v: 'after the update' }])
    await c.start(0)
    // node 0's round put back R as it was before node 2's update (the gap this catches)
    await holds(0, race, [{ id: 30, v: 'r' }])
    // the cluster says so within seconds, not at the next background check (10 minutes)
    await c.differenceShown(0, 'demo.users')
    await c.repaired(0, IDS, 'demo.users')
    for (const i of IDS) {
      const rows = await c.q(i, `SELECT id, v FROM demo.users WHERE email = 'race@x'`)
      expect(rows, `node ${i}`).toEqual([{ id: 30, v: 'moved on' }])
    }
    await c.converged(IDS, 'demo.staging')
  })

  it('a composite NULLS NOT DISTINCT index: (5, NULL) on two nodes collides, the later wins', async () => {
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(1, `INSERT INTO demo.pairs VALUES (1, 5, NULL, 'first'), (10, 1, 1, 'clean 1')`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(2, `INSERT INTO demo.pairs VALUES (2, 5, NULL, 'second'), (20, 2, 2, 'clean 2')`)
    await c.heal(MeshCluster.pairs(IDS))
    const md5 = await c.converged(IDS, 'demo.pairs', 30_000)
    expect(md5).toMatch(/^3 rows/)
    const [row] = await c.q(0, `SELECT id, v FROM demo.pairs WHERE a = 5`)
    expect(row).toEqual({ id: 2, v: 'second' })
    await noSkip()
  })

  it('a partitioned table: insert-insert and update-update in its partitions, the rest of the transaction applies', async () => {
    await c.q(0, `INSERT INTO demo.sales VALUES (1, 'eu', 'init'), (2, 'us', 'init')`)
    await c.converged(IDS, 'demo.sales')
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(0, `INSERT INTO demo.sales VALUES (10, 'eu', 'a'), (11, 'us', 'clean a')`)
    await c.q(0, `UPDATE demo.sales SET v = 'by 0' WHERE id = 1`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(1, `INSERT INTO demo.sales VALUES (10, 'eu', 'b'), (12, 'us', 'clean b')`)
    await c.q(1, `UPDATE demo.sales SET v = 'by 1' WHERE id = 1`)
    await c.heal(MeshCluster.pairs(IDS))
    const md5 = await c.converged(IDS, 'demo.sales', 30_000)
    expect(md5).toMatch(/^5 rows/)
    const rows = await c.q(2, `SELECT id, v FROM demo.sales WHERE id IN (1, 10) ORDER BY id`)
    expect(rows).toEqual([
      { id: 1, v: 'by 1' },
      { id: 10, v: 'b' },
    ])
    await noSkip()
    const kinds = (rs: Row[]) => new Set(rs.map((x) => x.kind))
    const recorded = await ledger('sales', (rs) => kinds(rs).size >= 2)
    expect(kinds(recorded)).toEqual(new Set(['insert_exists', 'update_origin_differs']))
  })

  it('a partition made later through the cluster DDL call replicates at once', async () => {
    const r = await call(c.api(0), 'POST', '/v1/cluster/ddl', {
      sql: `CREATE TABLE demo.sales_asia PARTITION OF demo.sales FOR VALUES IN ('asia')`,
    })
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    expect(r.json.outcome).toBe('committed')
    expect(r.json.reason, 'not added as a table of its own').toBeUndefined()
    // straight after: a subscription that listed partitions would skip these rows for good
    await c.q(1, `INSERT INTO demo.sales VALUES (30, 'asia', 'new partition')`)
    await c.q(2, `INSERT INTO demo.sales VALUES (31, 'asia', 'new partition')`)
    const md5 = await c.converged(IDS, 'demo.sales', 30_000)
    expect(md5).toMatch(/^7 rows/)
  })

  it('a partial unique index is not resolved row by row: the transaction is skipped and health names the table at once', async () => {
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(0, `INSERT INTO demo.part VALUES (1, 'p@x', 'a'), (2, NULL, 'clean a')`)
    await c.q(1, `INSERT INTO demo.part VALUES (3, 'p@x', 'b'), (4, NULL, 'clean b')`)
    await c.heal(MeshCluster.pairs(IDS))
    // the cluster says so within seconds, not at the next background check (10 minutes)
    await c.differenceShown(2, 'demo.part')
    await expect(c.converged(IDS, 'demo.part', 3000)).rejects.toThrow(/identical/)
  })

  it('a TRUNCATE racing an insert on another node: health names the table at once, a repair makes it identical', async () => {
    await c.q(0, `INSERT INTO demo.staging SELECT g, 'old' FROM generate_series(1, 10) g`)
    await c.converged(IDS, 'demo.staging')
    await c.cut(MeshCluster.pairs(IDS))
    await c.q(1, `INSERT INTO demo.staging VALUES (100, 'written meanwhile')`)
    await c.q(0, `TRUNCATE demo.staging`)
    await c.heal(MeshCluster.pairs(IDS))
    // node 1 applies node 0's TRUNCATE over its own row; nodes 0 and 2 get that row after it
    await c.differenceShown(1, 'demo.staging')
    const md5 = await c.repaired(0, IDS, 'demo.staging')
    expect(md5).toMatch(/^1 rows/)
  })
})
