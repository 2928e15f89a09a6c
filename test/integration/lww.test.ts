// Issue 10: every node converges. Row-level last-writer-wins on real PostgreSQL 17 and real
// arbiter processes (resolver "lww", the default in mesh mode): conflicting inserts in big
// transactions lose no clean row, concurrent updates of hot rows end identical everywhere,
// update/delete races end with the delete. And the same split brain with resolution off is
// caught diverging, so the convergence checks here can fail.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, DB, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]
const K = 50
const M = 100

const T = (name: string) =>
  `CREATE TABLE demo.${name} (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

async function partition(): Promise<void> {
  await c.cut(MeshCluster.pairs(IDS))
}

async function heal(): Promise<void> {
  await c.heal(MeshCluster.pairs(IDS))
}

async function add(table: string): Promise<void> {
  const r = await call(c.api(0), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
  expect(r.status, JSON.stringify(r.json)).toBe(201)
}

function client(id: number, applicationName?: string): pg.Client {
  const node = c.node(id)
  return new pg.Client({
    host: '127.0.0.1',
    port: node.pg.port,
    database: DB,
    user: 'postgres',
    password: node.pg.superPassword,
    ...(applicationName === undefined ? {} : { application_name: applicationName }),
  })
}

/** Every node updates through its own session for `ms`, one statement at a time; how many. */
async function storm(
  ms: number,
  update: (cl: pg.Client, node: number, n: number) => Promise<void>,
): Promise<number> {
  const clients = IDS.map((id) => client(id))
  await Promise.all(clients.map((cl) => cl.connect()))
  const until = Date.now() + ms
  let updates = 0
  try {
    await Promise.all(
      clients.map(async (cl, i) => {
        for (let n = 0; Date.now() < until; n++) {
          await update(cl, i, n)
          updates++
        }
      }),
    )
  } finally {
    await Promise.all(clients.map((cl) => cl.end()))
  }
  return updates
}

/** One transaction: conflicting keys [from, to] with value v, and M clean rows from `clean`. */
async function writeTx(
  id: number,
  table: string,
  keys: [number, number],
  v: string,
  clean: number,
) {
  await c.q(
    id,
    `INSERT INTO demo.${table} (id, v)
     SELECT g, $1 FROM generate_series($2::int, $3::int) g
     UNION ALL SELECT g, 'clean ' || $1 FROM generate_series($4::int, $4::int + $5::int - 1) g`,
    [v, keys[0], keys[1], clean, M],
  )
}

beforeAll(async () => {
  // recordMissingRows: the skipped-row test below; its price (the password in the server log
  // at DEBUG1) does not matter on a test cluster
  c = await MeshCluster.create(3, 'lww', { recordMissingRows: true })
  for (const i of IDS)
    for (const t of ['kv', 'hot', 'hotix', 'del', 'off', 'miss', 'quiet', 'gone', 'again'])
      await c.q(i, T(t))
  for (const i of IDS) await c.q(i, `CREATE INDEX ON demo.hotix (n)`)
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  for (const t of ['kv', 'hot', 'hotix', 'del', 'miss', 'quiet', 'gone', 'again']) await add(t)
  for (const i of IDS) await c.q(i, FIXED)
  await add('fixed')
})

/**
 * A write on node `id` that no peer receives: under a replication origin, which origin = none
 * subscriptions do not receive. Committed under it too (BEGIN ... COMMIT before the reset), so
 * its commit names that origin, no member's: a row deleted so is lost, not deleted by a member
 * (a tombstone no member stands behind; lww-tombstones.ts).
 */
async function unseen(id: number, statement: string): Promise<void> {
  await c.q(
    id,
    `SELECT pg_replication_origin_create('test_unseen')
      WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = 'test_unseen')`,
  )
  await c.q(
    id,
    `SELECT pg_replication_origin_session_setup('test_unseen');
     BEGIN; ${statement}; COMMIT;
     SELECT pg_replication_origin_session_reset()`,
  )
}

/** a table of fixed-width columns: nothing in it can be stored out of line (no TOAST trigger) */
const FIXED = `CREATE TABLE demo.fixed (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, at timestamptz);
  ALTER TABLE demo.fixed OWNER TO traktor_arbiter`

/** traktor's BEFORE UPDATE row triggers on a table, on one node (pg_trigger.tgtype bits) */
async function beforeUpdateTriggers(id: number, table: string): Promise<string[]> {
  const rows = await c.q(
    id,
    `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'trktr\\_%'
       AND tgtype & 1 <> 0 AND tgtype & 2 <> 0 AND tgtype & 16 <> 0 ORDER BY 1`,
    [table],
  )
  return rows.map((r) => r.tgname as string)
}

afterAll(async () => {
  await c?.destroy()
})

describe('issue 10: row-level last writer wins', () => {
  it(`split brain: ${K} conflicting keys and ${M} clean rows per side, on 3 nodes`, async () => {
    await partition()
    // node 0 first, then node 1 on every key, then node 2 on the upper half: later writers win
    await writeTx(0, 'kv', [1, K], 'a', 1000)
    await new Promise((r) => setTimeout(r, 20))
    await writeTx(1, 'kv', [1, K], 'b', 2000)
    await new Promise((r) => setTimeout(r, 20))
    await writeTx(2, 'kv', [K / 2 + 1, K], 'c', 3000)
    await heal()
    const md5 = await c.converged(IDS, 'demo.kv', 30_000)
    expect(md5).toMatch(new RegExp(`^${K + 3 * M} rows`))
    for (const i of IDS) {
      const rows = await c.q(i, `SELECT id, v FROM demo.kv WHERE id <= $1 ORDER BY id`, [K])
      const want = (id: number) => (id > K / 2 ? 'c' : 'b')
      expect(
        rows.filter((r) => r.v !== want(r.id as number)),
        `node ${i}`,
      ).toEqual([])
      const [clean] = await c.q(i, `SELECT count(*)::int AS n FROM demo.kv WHERE id >= 1000`)
      expect(clean?.n).toBe(3 * M)
    }
    // no subscription was left disabled, nothing skipped
    for (const i of IDS) {
      const [s] = await c.q(i, `SELECT bool_and(subenabled) AS ok FROM pg_subscription`)
      expect(s?.ok).toBe(true)
      const [h] = await c.q(i, `SELECT count(*)::int AS n FROM trktr.history WHERE action = 'skip'`)
      expect(h?.n).toBe(0)
    }
    // the ledger: every conflicting key resolved, with both versions, winner as above
    const history = await waitFor(
      async () => {
        const r = await call(c.api(2), 'GET', '/v1/cluster/history')
        const rows = (r.json.resolutions as Array<Record<string, any>>).filter(
          (x) => x.action === 'lww' && x.relation === 'demo.kv',
        )
        const final = (x: Record<string, any>) =>
          x.winner.node === (JSON.parse(x.key).id > K / 2 ? 2 : 1)
        const keys = new Set(rows.filter(final).map((x) => JSON.parse(x.key).id))
        return keys.size === K ? rows : false
      },
      15_000,
      'a resolution for every conflicting key',
    )
    // keys 1..25 saw two versions, 26..50 three (a → b → c): the final winner's resolution is
    // there for every key, with both versions
    for (let id = 1; id <= K; id++) {
      const winner = id > K / 2 ? 2 : 1
      const row = history.find((x) => JSON.parse(x.key).id === id && x.winner.node === winner)
      if (!row) throw new Error(`key ${id}: no resolution won by node ${winner}`)
      expect(row.winner.ts).toBeTruthy()
      expect(row.loser.node).not.toBe(winner)
      expect(row.loser.ts).toBeTruthy()
      expect(row.kind).toMatch(/insert_exists/)
    }
    const metrics = await fetch(`${c.api(0).url}/metrics`).then((r) => r.text())
    expect(metrics).toMatch(/traktor_conflicts_total\{kind="insert_exists"/)
  })

  it('two nodes insert the same keys at the same moment, no partition', async () => {
    const a = client(0)
    const b = client(1)
    await Promise.all([a.connect(), b.connect()])
    try {
      const sql = (v: string) =>
        `INSERT INTO demo.kv (id, v) SELECT g, '${v}' FROM generate_series(500, 519) g`
      // both rows written before either commits: a commit that replicated before the other
      // node's INSERT ran made that INSERT fail on its own node (CI, under load)
      await Promise.all([a.query('BEGIN'), b.query('BEGIN')])
      await Promise.all([a.query(sql('x')), b.query(sql('y'))])
      await Promise.all([a.query('COMMIT'), b.query('COMMIT')])
    } finally {
      await Promise.all([a.end(), b.end()])
    }
    await c.converged(IDS, 'demo.kv', 30_000)
  })

  it('update storm: 3 nodes update the same 20 hot rows for 20 s, identical right after', async () => {
    await c.q(0, `INSERT INTO demo.hot (id, v) SELECT g, 'init' FROM generate_series(1, 20) g`)
    await c.converged(IDS, 'demo.hot')
    const updates = await storm(20_000, async (cl, i, n) => {
      const id = 1 + ((n * 7 + i) % 20)
      if (n % 2 === 0) await cl.query(`UPDATE demo.hot SET n = n + 1 WHERE id = $1`, [id])
      else await cl.query(`UPDATE demo.hot SET v = $2 WHERE id = $1`, [id, `node ${i} #${n}`])
    })
    const stopped = Date.now()
    await c.converged(IDS, 'demo.hot', 30_000)
    const ms = Date.now() - stopped
    console.info(
      `update storm: ${updates} updates, identical on all nodes ${ms} ms after the writers stopped`,
    )
    // issue 10: within 2 s (a version an apply worker skipped is mended ~1.5 s after the end)
    expect(ms).toBeLessThanOrEqual(2000)
  })

  // Every UPDATE of an indexed column makes a new index entry: an apply worker looking the row
  // up at that moment can miss it and skip its UPDATE without a word (PostgreSQL 17; a scratch
  // run of two servers counted ~100 such skips in 20 s). Where the session that moved the row
  // wrote an older version (another apply worker, a resolution round), that node keeps it — when
  // it was the row's last version, the check after the conflicts mends it (check-after.ts); the
  // deadline leaves time for that check.
  it('update storm on a table with an index besides the key (every update a new index entry): identical everywhere', async () => {
    await c.q(0, `INSERT INTO demo.hotix (id, v) SELECT g, 'init' FROM generate_series(1, 8) g`)
    await c.converged(IDS, 'demo.hotix')
    const updates = await storm(10_000, async (cl, i, n) => {
      const id = 1 + ((n * 3 + i) % 8)
      await cl.query(`UPDATE demo.hotix SET n = n + 1, v = $2 WHERE id = $1`, [id, `${i}#${n}`])
    })
    const stopped = Date.now()
    await c.converged(IDS, 'demo.hotix', 60_000)
    const ms = Date.now() - stopped
    const history = await call(c.api(0), 'GET', '/v1/cluster/history')
    const mine = (history.json.resolutions as Array<Record<string, any>>).filter(
      (x) => x.relation === 'demo.hotix',
    )
    const mended = mine.filter((x) => x.kind === 'repair').length
    const missed = mine.filter((x) => x.kind === 'update_missing').length
    console.info(
      `update storm, indexed: ${updates} updates, identical ${ms} ms after the writers stopped; rows mended after the conflicts: ${mended}; UPDATEs apply workers missed (recorded): ${missed}`,
    )
  })

  it('a table of fixed-width columns has no BEFORE UPDATE row trigger of ours; update-update on it ends with the later writer', async () => {
    // any BEFORE UPDATE row trigger, even one that never fires there, makes every UPDATE on the
    // table lock its row first, on the writer and in the apply workers
    for (const i of IDS)
      expect(await beforeUpdateTriggers(i, 'demo.fixed'), `node ${i}`).toEqual([])
    await c.q(0, `INSERT INTO demo.fixed (id) SELECT g FROM generate_series(1, 10) g`)
    await c.converged(IDS, 'demo.fixed')
    await partition()
    await c.q(0, `UPDATE demo.fixed SET n = 100, at = now() WHERE id <= 5`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(1, `UPDATE demo.fixed SET n = n + 200 WHERE id <= 5`)
    await c.q(2, `UPDATE demo.fixed SET n = -1 WHERE id > 5`)
    await heal()
    const md5 = await c.converged(IDS, 'demo.fixed', 30_000)
    expect(md5).toMatch(/^10 rows/)
    const rows = await c.q(0, `SELECT id, n, at IS NULL AS no_at FROM demo.fixed ORDER BY id`)
    expect(rows).toEqual([
      ...[1, 2, 3, 4, 5].map((id) => ({ id, n: '200', no_at: true })),
      ...[6, 7, 8, 9, 10].map((id) => ({ id, n: '-1', no_at: true })),
    ])
    for (const i of IDS)
      expect(await beforeUpdateTriggers(i, 'demo.fixed'), `node ${i}`).toEqual([])
  })

  it('update/delete races end with the delete, identical everywhere', async () => {
    await c.q(0, `INSERT INTO demo.del (id, v) SELECT g, 'init' FROM generate_series(1, 10) g`)
    await c.converged(IDS, 'demo.del')
    await partition()
    await c.q(0, `DELETE FROM demo.del WHERE id IN (5, 6, 7)`)
    await new Promise((r) => setTimeout(r, 20))
    await c.q(1, `UPDATE demo.del SET v = 'updated later' WHERE id = 5`) // update vs delete
    await c.q(1, `DELETE FROM demo.del WHERE id = 6`) // delete vs delete (missing on heal)
    await c.q(2, `UPDATE demo.del SET v = 'updated on 2' WHERE id = 7`) // update of a row gone
    await heal()
    const md5 = await c.converged(IDS, 'demo.del', 30_000)
    expect(md5).toMatch(/^7 rows/)
    // the update that lost to a delete is in the ledger
    await waitFor(
      async () => {
        const r = await call(c.api(0), 'GET', '/v1/cluster/history')
        return (r.json.resolutions as Array<Record<string, any>>).some(
          (x) => x.relation === 'demo.del' && x.resolution === 'delete wins',
        )
      },
      15_000,
      'a delete-wins resolution in the ledger',
    )
  })

  it('an UPDATE and a DELETE of rows missing on a node are recorded there, the table is checked at once, and a repair makes it identical', async () => {
    await c.q(0, `INSERT INTO demo.miss (id, v) SELECT g, 'init' FROM generate_series(1, 5) g`)
    await c.converged(IDS, 'demo.miss')
    // node 1 loses rows 1 and 2 without telling anyone
    await unseen(1, `DELETE FROM demo.miss WHERE id IN (1, 2)`)
    await c.q(0, `UPDATE demo.miss SET v = 'updated on 0' WHERE id = 1`) // update_missing on 1
    await c.q(0, `DELETE FROM demo.miss WHERE id = 2`) // delete_missing on 1
    const ledger = await waitFor(
      async () => {
        const r = await call(c.api(1), 'GET', '/v1/cluster/history')
        const rows = (r.json.resolutions as Array<Record<string, any>>).filter(
          (x) => x.relation === 'demo.miss',
        )
        const kinds = new Set(rows.map((x) => x.kind))
        return kinds.has('update_missing') && kinds.has('delete_missing') ? rows : undefined
      },
      15_000,
      'update_missing and delete_missing in the ledger',
    )
    expect(ledger.every((x) => x.node === 1 || x.node === undefined)).toBe(true)
    // the check that follows says so on every node: not healthy, the table named
    await c.differenceShown(2, 'demo.miss')
    const md5 = await c.repaired(0, IDS, 'demo.miss')
    expect(md5).toMatch(/^4 rows/)
    const [row] = await c.q(1, `SELECT v FROM demo.miss WHERE id = 1`)
    expect(row?.v).toBe('updated on 0')
  })

  it('after resolved conflicts, the check that follows sets a row every node holds to its last writer, and names a row one node lacks', async () => {
    await c.q(0, `INSERT INTO demo.quiet (id, v) SELECT g, 'init' FROM generate_series(1, 10) g`)
    await c.converged(IDS, 'demo.quiet')
    // node 1 changes row 10 and node 2 deletes row 9 without telling anyone: what an UPDATE an
    // apply worker skipped would leave (PostgreSQL 17 can, check-after.ts), and a lost row
    await unseen(1, `UPDATE demo.quiet SET v = 'newer on 1' WHERE id = 10`)
    await unseen(2, `DELETE FROM demo.quiet WHERE id = 9`)
    // update-update on rows 1-5, node 1 the later writer
    await partition()
    await c.q(0, `UPDATE demo.quiet SET v = 'zero' WHERE id <= 5`)
    await c.q(1, `UPDATE demo.quiet SET v = 'one' WHERE id <= 5`)
    await heal()
    for (const i of IDS)
      await waitFor(
        async () =>
          (await c.q(i, `SELECT count(*)::int AS n FROM demo.quiet WHERE id <= 5 AND v = 'one'`))[0]
            ?.n === 5,
        15_000,
        `rows 1-5 resolved on node ${i}`,
      )
    // nobody asks for a check (the background one runs every 10 minutes): the check that
    // follows the resolved conflicts sets row 10 to node 1's version on every node, half a
    // second after they quieted down ...
    const resolvedAt = Date.now()
    for (const i of IDS)
      await waitFor(
        async () => (await c.q(i, `SELECT v FROM demo.quiet WHERE id = 10`))[0]?.v === 'newer on 1',
        45_000,
        `row 10 mended on node ${i}`,
      )
    const mendedMs = Date.now() - resolvedAt
    console.info(`row 10 mended on every node ${mendedMs} ms after the conflicts were resolved`)
    // ~1.5 s here (half a second of quiet, then the first turn); ~12 s before it was sped up
    expect(mendedMs).toBeLessThan(5000)
    const mends = await waitFor(
      async () => {
        const r = await call(c.api(0), 'GET', '/v1/cluster/history')
        const rows = (r.json.resolutions as Array<Record<string, any>>).filter(
          (x) => x.relation === 'demo.quiet' && x.kind === 'repair',
        )
        return rows.length > 0 ? rows : undefined
      },
      10_000,
      'the mend in the history',
    )
    expect(mends.map((m) => m.winner.node)).toEqual(mends.map(() => 1))
    expect(String(mends[0]?.reason)).toContain('after row-level conflicts')
    // and counted where it was made, once it is done: traktor_conflicts_total{kind="versions_differ"}
    const mendsCounted = async () => {
      const texts = await Promise.all(
        IDS.map((i) => fetch(`${c.api(i).url}/metrics`).then((r) => r.text())),
      )
      return texts
        .map((t) =>
          t.match(
            /^traktor_conflicts_total\{kind="versions_differ",relation="demo\.quiet",outcome="mended"\} (\d+)$/m,
          ),
        )
        .reduce((sum, m) => sum + Number(m?.[1] ?? 0), 0)
    }
    await waitFor(async () => (await mendsCounted()) > 0, 10_000, 'the mend counted')
    expect(await mendsCounted()).toBe(1)
    // ... and leaves row 9 to the operator: every node's status names the table, one row
    for (const i of [0, 2])
      await waitFor(
        async () => {
          const r = await call(c.api(i), 'GET', '/v1/cluster/status')
          return JSON.stringify(r.json.reasons ?? []).includes('found 1 row of demo.quiet')
        },
        15_000,
        `one row of demo.quiet differing in node ${i}'s status`,
      )
    const md5 = await c.repaired(0, IDS, 'demo.quiet')
    expect(md5).toMatch(/^10 rows/)
    const [r] = await c.q(
      0,
      `SELECT count(*)::int AS n FROM demo.quiet WHERE id <= 5 AND v = 'one'`,
    )
    expect(r?.n).toBe(5)
  })

  it('a DELETE one node never applied (PostgreSQL 17 can skip it) is made on that node by the check after conflicts: the tombstones say who saw it', async () => {
    await c.q(0, `INSERT INTO demo.gone (id, v) SELECT g, 'init' FROM generate_series(1, 10) g`)
    await c.converged(IDS, 'demo.gone')
    // what PostgreSQL 17's apply worker leaves when it misses a row another session updates at
    // that moment (commitfest 5151): node 1 skips node 0's DELETE of row 5 and keeps the row,
    // then updates it; that update is skipped where the row is gone (update_missing)
    await unseen(1, `DELETE FROM demo.gone WHERE id = 5`)
    await c.q(0, `DELETE FROM demo.gone WHERE id = 5`)
    await c.q(0, `INSERT INTO demo.gone (id, v) VALUES (100, 'after the delete')`)
    await waitFor(
      async () => (await c.q(1, `SELECT 1 FROM demo.gone WHERE id = 100`)).length === 1,
      15_000,
      "node 0's delete and the row after it applied on node 1",
    )
    await unseen(1, `INSERT INTO demo.gone (id, v) VALUES (5, 'init')`)
    await c.q(1, `UPDATE demo.gone SET v = 'updated on 1' WHERE id = 5`)
    // conflicts on the table (update-update on rows 1-3), so the check after them comes
    await partition()
    await c.q(0, `UPDATE demo.gone SET v = 'zero' WHERE id <= 3`)
    await c.q(1, `UPDATE demo.gone SET v = 'one' WHERE id <= 3`)
    await heal()
    // the delete wins: node 1 never applied it (no tombstone of it there), as it would have
    // had its apply worker found the row
    for (const i of IDS)
      await waitFor(
        async () => (await c.q(i, `SELECT 1 FROM demo.gone WHERE id = 5`)).length === 0,
        20_000,
        `row 5 deleted on node ${i}`,
      )
    const md5 = await c.converged(IDS, 'demo.gone')
    expect(md5).toMatch(/^10 rows/)
    const [r] = await c.q(2, `SELECT count(*)::int AS n FROM demo.gone WHERE id <= 3 AND v = 'one'`)
    expect(r?.n).toBe(3)
    const mends = await waitFor(
      async () => {
        const h = await call(c.api(1), 'GET', '/v1/cluster/history')
        const rows = (h.json.resolutions as Array<Record<string, any>>).filter(
          (x) => x.relation === 'demo.gone' && x.kind === 'repair' && x.resolution === 'delete',
        )
        return rows.length > 0 ? rows : undefined
      },
      10_000,
      'the delete in the history',
    )
    expect(mends.map((m) => (typeof m.key === 'string' ? JSON.parse(m.key) : m.key))).toEqual([
      { id: 5 },
    ])
    expect(mends[0]?.winner.node).toBe(0)
  })

  it("a DELETE leaves a tombstone on every node that applies it, none where it was made; the arbiter's own sessions leave none (a join's copy may empty a table row by row)", async () => {
    await c.q(0, `INSERT INTO demo.gone (id, v) VALUES (200, 'x'), (201, 'y'), (202, 'z')`)
    await c.converged(IDS, 'demo.gone')
    const tombs = async (id: number, key: number) =>
      (
        await c.q(
          id,
          `SELECT count(*)::int AS n FROM trktr.tombstones
            WHERE relid = 'demo.gone'::regclass AND key = jsonb_build_object('id', $1::int)`,
          [key],
        )
      )[0]?.n
    await c.q(0, `DELETE FROM demo.gone WHERE id = 200`)
    await c.converged(IDS, 'demo.gone')
    expect(await tombs(0, 200)).toBe(0)
    for (const i of [1, 2]) expect(await tombs(i, 200), `node ${i}`).toBe(1)
    // sessions in the replica role, as apply workers are: one named as the arbiter's are
    const replicaSession = async (name: string, key: number) => {
      const cl = client(1, name)
      await cl.connect()
      try {
        await cl.query(`SET session_replication_role = replica`)
        await cl.query(`DELETE FROM demo.gone WHERE id = $1`, [key])
      } finally {
        await cl.end()
      }
    }
    await replicaSession('traktor-1-test', 201)
    await replicaSession('psql', 202)
    expect(await c.converged(IDS, 'demo.gone')).toMatch(/^10 rows/)
    expect(await tombs(1, 201)).toBe(0)
    expect(await tombs(1, 202)).toBe(1)
  })

  it('a row written again after a DELETE, reaching a node before that DELETE, ends on every node (the tombstones say the row came after it)', async () => {
    await c.q(0, `INSERT INTO demo.again (id, v) SELECT g, 'init' FROM generate_series(1, 5) g`)
    await c.converged(IDS, 'demo.again')
    // node 2 hears nothing from node 0 for a while
    await c.cut([[2, 0]])
    await c.q(0, `DELETE FROM demo.again WHERE id = 3`)
    await waitFor(
      async () => (await c.q(1, `SELECT 1 FROM demo.again WHERE id = 3`)).length === 0,
      15_000,
      'the delete on node 1',
    )
    // node 1 writes the key again after the delete; node 2, which still has the old row, takes
    // it as an insert on an existing key (the later writer wins)
    await c.q(1, `INSERT INTO demo.again (id, v) VALUES (3, 'again on 1')`)
    await waitFor(
      async () => (await c.q(2, `SELECT v FROM demo.again WHERE id = 3`))[0]?.v === 'again on 1',
      20_000,
      "node 1's row on node 2",
    )
    // then node 0's DELETE reaches node 2, over node 1's newer row: the delete wins there
    // (it would over a concurrent update) and node 2 alone lacks the row ...
    await c.heal([[2, 0]])
    // ... until the check after those conflicts: every node holding the row saw the delete
    // before it (their tombstones), so the row wins and node 2 gets it back
    for (const i of IDS)
      await waitFor(
        async () => (await c.q(i, `SELECT v FROM demo.again WHERE id = 3`))[0]?.v === 'again on 1',
        20_000,
        `row 3 on node ${i}`,
      )
    const md5 = await c.converged(IDS, 'demo.again')
    expect(md5).toMatch(/^5 rows/)
  })

  it('with resolution off, the same split brain is caught diverging (the check can fail)', async () => {
    await Promise.all(IDS.map((i) => c.api(i).stop()))
    await Promise.all(IDS.map((i) => c.start(i, { resolver: 'off' })))
    // three arbiters restarting at once on a loaded CI machine: a deadline, not a claim
    await c.waitMeshed(IDS, 60_000)
    await add('off')
    await partition()
    await writeTx(0, 'off', [1, 10], 'a', 1000)
    await writeTx(1, 'off', [1, 10], 'b', 2000)
    await heal()
    await expect(c.converged(IDS, 'demo.off', 5000)).rejects.toThrow(/identical/)
  }, 180_000)
})
