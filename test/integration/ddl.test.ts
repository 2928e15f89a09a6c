// Issue 13, cluster DDL: POST /v1/cluster/ddl (JSON-RPC cluster.ddl, traktor ctl ddl) changes
// the schema on every node at once through the two-phase machinery: fence, drain, PREPARE the
// statement everywhere, commit only when every node prepared it. Writers insert and update on all
// three nodes through an ADD COLUMN ... DEFAULT, a CREATE INDEX and a DROP COLUMN: no committed
// row is lost, replication never stops (no apply error anywhere), every node ends with the same
// rows and schema. A statement that fails on one node leaves every node as it was; statement
// kinds the cluster does not run are a 400 that changes nothing.
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, KEY, MeshCluster, TESTING_ENV, waitFor } from '../fixtures/mesh-cluster.js'

const BIN = path.resolve(import.meta.dirname, '../../bin/traktor.js')
// DDL_TEST_FENCE=off starts the arbiters without the write fence (testing.fence = false): then
// writers go on through the schema change, rows of the old schema reach peers that already
// dropped the column, and the DROP COLUMN test fails on apply errors and missing rows — how
// this test was proven able to fail
const FENCE = process.env.DDL_TEST_FENCE !== 'off'
const IDS = [0, 1, 2]
let c: MeshCluster

const ddl = (id: number, body: unknown) => call(c.api(id), 'POST', '/v1/cluster/ddl', body)

interface WriterStats {
  rows: number
  retried: number
  errors: string[]
}

/**
 * One writer per node: each transaction inserts the node's next key and bumps the previous
 * key's n, so every node's rows are known exactly (key k of node i has n = 1, its last n = 0).
 * A transaction failed with 40001 (a schema change cancelled its wait) is retried.
 */
let runs = 0
function writers(ids: number[]) {
  // each run its own keys and node tags (tag = run * 10 + node)
  const run = ++runs
  let running = true
  const stats = new Map<number, WriterStats>()
  const loops = ids.map(async (id) => {
    const s: WriterStats = { rows: 0, retried: 0, errors: [] }
    stats.set(id, s)
    const cl = await c.client(id)
    try {
      while (running) {
        const tag = run * 10 + id
        const key = tag * 1_000_000 + s.rows
        try {
          await cl.query('BEGIN')
          await cl.query('INSERT INTO demo.t (id, node, n) VALUES ($1, $2, 0)', [key, tag])
          if (s.rows > 0) await cl.query('UPDATE demo.t SET n = n + 1 WHERE id = $1', [key - 1])
          await cl.query('COMMIT')
          s.rows++
        } catch (err) {
          await cl.query('ROLLBACK').catch(() => undefined)
          if ((err as { code?: string }).code === '40001') s.retried++
          else s.errors.push((err as Error).message)
        }
      }
    } finally {
      await cl.end()
    }
  })
  return {
    stats,
    /** wait until every writer committed `more` rows beyond what it has now */
    progress: async (more: number) => {
      const from = new Map(ids.map((id) => [id, stats.get(id)?.rows ?? 0]))
      await waitFor(
        () => ids.every((id) => (stats.get(id)?.rows ?? 0) >= (from.get(id) ?? 0) + more),
        30_000,
        `${more} more rows from every writer`,
      )
    },
    stop: async () => {
      running = false
      await Promise.all(loops)
    },
  }
}

/** Every node holds exactly every committed row of every writer, with its known n. */
async function expectWritten(stats: Map<number, WriterStats>) {
  for (const id of IDS) {
    const rows = await c.q(
      id,
      `SELECT node, count(*)::int AS n, sum(n)::int AS bumps FROM demo.t GROUP BY node`,
    )
    for (const [id0, s] of stats) {
      const node = runs * 10 + id0
      const r = rows.find((x) => x.node === node)
      expect(r?.n ?? 0, `rows of writer ${node} on node ${id}`).toBe(s.rows)
      expect(r?.bumps ?? 0, `updates of writer ${node} on node ${id}`).toBe(Math.max(0, s.rows - 1))
    }
  }
}

async function columns(id: number): Promise<string[]> {
  const rows = await c.q(
    id,
    `SELECT attname FROM pg_attribute WHERE attrelid = 'demo.t'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
  )
  return rows.map((r) => r.attname as string)
}

async function hasIndex(id: number, name: string): Promise<boolean> {
  const rows = await c.q(
    id,
    `SELECT 1 FROM pg_indexes WHERE schemaname = 'demo' AND indexname = $1`,
    [name],
  )
  return rows.length === 1
}

/** Whether node id's row-level resolution function for demo.t names a column. */
async function lwwNames(id: number, column: string): Promise<boolean> {
  const [r] = await c.q(
    id,
    `SELECT prosrc FROM pg_proc WHERE proname = 'lww_' || 'demo.t'::regclass::oid`,
  )
  expect(r, `row-level triggers on node ${id}`).toBeDefined()
  return String(r?.prosrc ?? '').includes(column)
}

/** No apply error on any node, every subscription enabled: replication never stopped. */
async function expectReplicating() {
  for (const id of IDS) {
    const [e] = await c.q(
      id,
      `SELECT coalesce(sum(apply_error_count), 0)::int AS n FROM pg_stat_subscription_stats`,
    )
    expect(e?.n, `apply errors on node ${id}\n${c.problems(id)}`).toBe(0)
    const off = await c.q(id, `SELECT subname FROM pg_subscription WHERE NOT subenabled`)
    expect(off, `disabled subscriptions on node ${id}`).toEqual([])
  }
}

/** Nothing left half-done: no prepared transaction, no fence trigger, no undecided proposal. */
async function expectSettled() {
  for (const id of IDS) {
    const [r] = await c.q(
      id,
      `SELECT (SELECT count(*) FROM pg_prepared_xacts)::int AS prepared,
              (SELECT count(*) FROM pg_trigger WHERE tgname = 'trktr_fence')::int AS fences,
              (SELECT count(*) FROM trktr.proposals WHERE decision IS NULL)::int AS open`,
    )
    expect(r, `node ${id}`).toEqual({ prepared: 0, fences: 0, open: 0 })
  }
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'ddl')
  for (const i of IDS)
    await c.q(
      i,
      `CREATE TABLE demo.t (id bigint PRIMARY KEY, node int NOT NULL, n int NOT NULL);
       ALTER TABLE demo.t OWNER TO traktor_arbiter`,
    )
  await Promise.all(
    IDS.map((i) => (FENCE ? c.start(i) : c.start(i, { testing: { fence: false } }, TESTING_ENV))),
  )
  // three arbiters starting at once beside another test file: give the mesh time
  await c.waitMeshed(IDS, 60_000)
  await c.waitSubscribed(IDS, 60_000)
  const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.t')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
})

afterAll(async () => {
  await c?.destroy()
})

describe('cluster DDL under writes on every node', () => {
  it('ADD COLUMN ... DEFAULT and CREATE INDEX: no row lost, replication never stops', async () => {
    const w = writers(IDS)
    try {
      await w.progress(50)
      const add = await ddl(1, {
        sql: 'ALTER TABLE demo.t ADD COLUMN extra int NOT NULL DEFAULT 7',
      })
      expect(add.status, JSON.stringify(add.json)).toBe(200)
      expect(add.json).toMatchObject({ outcome: 'committed', op: 'ddl', kind: 'alter-table' })
      expect(add.json.tables).toEqual(['demo.t'])
      expect(add.json.nodes.map((n: { node: number }) => n.node).sort()).toEqual(IDS)
      await w.progress(50)
      const idx = await ddl(2, { sql: 'CREATE INDEX t_n ON demo.t (n)' })
      expect(idx.status, JSON.stringify(idx.json)).toBe(200)
      expect(idx.json.kind).toBe('create-index')
      await w.progress(50)
      console.info(
        `cluster DDL under load: add column ${add.json.duration_ms} ms, create index ${idx.json.duration_ms} ms`,
      )
    } finally {
      await w.stop()
    }
    const errors = [...w.stats.values()].flatMap((s) => s.errors)
    expect(errors).toEqual([])
    for (const id of IDS) {
      expect(await columns(id)).toEqual(['id', 'node', 'n', 'extra'])
      expect(await hasIndex(id, 't_n'), `index on node ${id}`).toBe(true)
      // the resolution triggers were re-made with the schema change (they name the columns)
      expect(await lwwNames(id, 'extra'), `lww function on node ${id}`).toBe(true)
    }
    await c.converged(IDS, 'demo.t', 30_000)
    await expectWritten(w.stats)
    for (const id of IDS) {
      const [r] = await c.q(
        id,
        `SELECT count(*)::int AS n FROM demo.t WHERE extra IS DISTINCT FROM 7`,
      )
      expect(r?.n, `rows without the default on node ${id}`).toBe(0)
    }
    await expectReplicating()
    await expectSettled()
    // the version moved everywhere, and each node logged both changes
    for (const id of IDS) {
      const log = await c.q(id, `SELECT kind FROM trktr.ddl_log ORDER BY prepared`)
      expect(log.map((r) => r.kind)).toEqual(['alter-table', 'create-index'])
    }
  })

  it('DROP COLUMN (rows in flight would break the peers): drained first, nothing lost', async () => {
    const w = writers(IDS)
    let retried = 0
    try {
      await w.progress(50)
      const drop = await ddl(0, { sql: 'ALTER TABLE demo.t DROP COLUMN extra' })
      expect(drop.status, JSON.stringify(drop.json)).toBe(200)
      await w.progress(50)
    } finally {
      await w.stop()
      retried = [...w.stats.values()].reduce((a, s) => a + s.retried, 0)
    }
    expect([...w.stats.values()].flatMap((s) => s.errors)).toEqual([])
    console.info(`drop column under load: ${retried} writer transactions retried (40001)`)
    for (const id of IDS) {
      expect(await columns(id)).toEqual(['id', 'node', 'n'])
      expect(await lwwNames(id, 'extra'), `lww function on node ${id}`).toBe(false)
    }
    await c.converged(IDS, 'demo.t', 30_000)
    await expectWritten(w.stats)
    await expectReplicating()
    await expectSettled()
  })
})

describe('a schema change is all or nothing', () => {
  it('a statement failing on one node (a name taken there) aborts everywhere and changes nothing', async () => {
    await c.q(2, 'CREATE INDEX t_taken ON demo.t (node)')
    const versions = await Promise.all(
      IDS.map(
        async (id) => (await c.q(id, 'SELECT replicaset_version AS v FROM trktr.cluster'))[0]?.v,
      ),
    )
    const r = await ddl(0, { sql: 'CREATE INDEX t_taken ON demo.t (n)' })
    expect(r.status, JSON.stringify(r.json)).toBe(409)
    expect(r.json).toMatchObject({ error: 'ERR_ABORTED', outcome: 'aborted', op: 'ddl' })
    const refused = r.json.nodes.filter((n: { ack: boolean }) => !n.ack)
    expect(refused.map((n: { node: number }) => n.node)).toEqual([2])
    expect(refused[0].reason).toMatch(/node 2: .*t_taken.* already exists/)
    expect(r.json.message).toMatch(/node 2/)
    expect(await hasIndex(0, 't_taken')).toBe(false)
    expect(await hasIndex(1, 't_taken')).toBe(false)
    await expectSettled()
    for (const [i, id] of IDS.entries()) {
      const [v] = await c.q(id, 'SELECT replicaset_version AS v FROM trktr.cluster')
      expect(v?.v, `version on node ${id}`).toBe(versions[i])
    }
    // writes go on everywhere
    await c.q(0, `INSERT INTO demo.t (id, node, n) VALUES (9000001, 0, 0)`)
    await c.converged(IDS, 'demo.t')
    await c.q(2, 'DROP INDEX demo.t_taken')
  })

  it('refuses what it does not run, with a 400 that changes nothing', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ sql: 'DELETE FROM demo.t' }, /not a schema change the cluster runs; allowed: ALTER TABLE/],
      [
        { sql: 'ALTER TABLE demo.t ADD COLUMN a int; ALTER TABLE demo.t ADD COLUMN b int' },
        /multiple commands/,
      ],
      [{ sql: 'CREATE INDEX CONCURRENTLY t_c ON demo.t (n)' }, /CONCURRENTLY/],
      [{ sql: 'CREATE TABLE demo.nopk (v int)' }, /no primary key/],
      [{ sql: 'ALTER TABLE demo.t RENAME TO t2' }, /renames replicated table demo.t/],
      [
        { sql: 'ALTER TABLE demo.t ADD COLUMN a int', tables: ['demo.nope'] },
        /not a replicated table/,
      ],
      [
        { sql: 'ALTER TABLE demo.t ADD COLUMN a int', tables: ['demo.t; DROP'] },
        /tables|unexpected/,
      ],
      [{ sql: 'ALTER TABLE demo.t ADD COLUMN a int', extra: 1 }, /extra|Unrecognized/i],
      [{}, /sql/],
      ['ALTER TABLE demo.t ADD COLUMN a int', /expected/],
    ]
    for (const [body, why] of cases) {
      const r = await ddl(1, body)
      expect(r.status, `${JSON.stringify(body)} → ${JSON.stringify(r.json)}`).toBe(400)
      expect(r.json.message).toMatch(why)
    }
    for (const id of IDS) {
      expect(await columns(id)).toEqual(['id', 'node', 'n'])
      const [t] = await c.q(
        id,
        `SELECT to_regclass('demo.nopk') IS NULL AS gone, to_regclass('demo.t2') IS NULL AS kept`,
      )
      expect(t).toEqual({ gone: true, kept: true })
    }
    await expectSettled()
  })

  it('direct DDL on a replicated table is refused with the cluster call to use', async () => {
    await expect(c.q(1, 'ALTER TABLE demo.t ADD COLUMN z int')).rejects.toThrow(
      /POST \/v1\/cluster\/ddl/,
    )
    await expect(c.q(1, 'DROP TABLE demo.t')).rejects.toThrow(/POST \/v1\/cluster\/ddl/)
    // row-level resolution's triggers too: without one, that node's conflicts diverge silently
    for (const name of ['trktr_lww_ud', 'trktr_lww_move']) {
      await expect(c.q(1, `DROP TRIGGER ${name} ON demo.t`)).rejects.toThrow(
        /resolves the conflicts of a replicated table/,
      )
    }
    const left = await c.q(
      1,
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'demo.t'::regclass AND tgname LIKE 'trktr_lww_%'`,
    )
    // update-and-delete, move and truncate (the insert and key-change ones only while armed)
    expect(left[0]?.n).toBeGreaterThanOrEqual(3)
  })
})

describe('tables, JSON-RPC and the CLI', () => {
  it('CREATE TABLE joins the replicaset, DROP TABLE leaves it, on every node', async () => {
    const made = await ddl(2, { sql: 'CREATE TABLE demo.fresh (id int PRIMARY KEY, v text)' })
    expect(made.status, JSON.stringify(made.json)).toBe(200)
    expect(made.json.created).toEqual(['demo.fresh'])
    expect(made.json.added.map((a: { outcome: string }) => a.outcome)).toEqual(['committed'])
    await c.waitSubscribed(IDS)
    await c.q(1, `INSERT INTO demo.fresh VALUES (1, 'from node 1')`)
    await waitFor(
      async () => (await c.q(0, 'SELECT 1 FROM demo.fresh')).length === 1,
      15_000,
      'a row of the new table on node 0',
    )
    await c.converged(IDS, 'demo.fresh')
    const gone = await ddl(0, { sql: 'DROP TABLE demo.fresh' })
    expect(gone.status, JSON.stringify(gone.json)).toBe(200)
    expect(gone.json.dropped).toEqual(['demo.fresh'])
    for (const id of IDS) {
      const [r] = await c.q(
        id,
        `SELECT to_regclass('demo.fresh') IS NULL AS dropped,
                NOT EXISTS (SELECT 1 FROM trktr.replicaset WHERE table_name = 'fresh') AS left`,
      )
      expect(r, `node ${id}`).toEqual({ dropped: true, left: true })
    }
    // the other table still replicates
    await c.q(2, `INSERT INTO demo.t (id, node, n) VALUES (9000002, 2, 0)`)
    await c.converged(IDS, 'demo.t')
    await expectReplicating()
    await expectSettled()
  })

  it('ALTER COLUMN ... TYPE of the key and of a text column the row-level triggers name', async () => {
    const made = await ddl(1, { sql: 'CREATE TABLE demo.typed (id int PRIMARY KEY, v text)' })
    expect(made.status, JSON.stringify(made.json)).toBe(200)
    await c.waitSubscribed(IDS)
    await c.q(1, `INSERT INTO demo.typed SELECT g, 'row ' || g FROM generate_series(1, 100) g`)
    await c.converged(IDS, 'demo.typed', 15_000)
    const alter = await ddl(0, {
      sql: 'ALTER TABLE demo.typed ALTER COLUMN id TYPE bigint, ALTER COLUMN v TYPE varchar(200)',
    })
    expect(alter.status, JSON.stringify(alter.json)).toBe(200)
    for (const id of IDS) {
      const types = await c.q(
        id,
        `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute
          WHERE attrelid = 'demo.typed'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      )
      expect(
        types.map((r) => r.t),
        `node ${id}`,
      ).toEqual(['bigint', 'character varying(200)'])
      // the row-level triggers were made again on the new types: a key change still moves the row
      const [t] = await c.q(
        id,
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'demo.typed'::regclass AND tgname LIKE 'trktr\\_lww\\_%'`,
      )
      expect(t?.n, `row-level triggers on node ${id}`).toBeGreaterThan(0)
    }
    await c.q(2, `UPDATE demo.typed SET id = 5000000000, v = 'moved' WHERE id = 7`)
    await c.q(0, `INSERT INTO demo.typed VALUES (6000000000, 'new')`)
    await waitFor(
      async () =>
        (
          await Promise.all(
            IDS.map((id) =>
              c.q(id, `SELECT 1 FROM demo.typed WHERE id IN (5000000000, 6000000000)`),
            ),
          )
        ).every((r) => r.length === 2),
      15_000,
      'the moved row and the new one on every node',
    )
    const md5 = await c.converged(IDS, 'demo.typed', 15_000)
    expect(md5).toMatch(/^101 rows/)
    await expectReplicating()
    await expectSettled()
  })

  it('cluster.ddl over JSON-RPC and traktor ctl ddl', async () => {
    const rpc = async (params: unknown) =>
      (
        await call(c.api(1), 'POST', '/rpc', {
          jsonrpc: '2.0',
          id: 1,
          method: 'cluster.ddl',
          params,
        })
      ).json
    const ok = await rpc({ sql: 'CREATE INDEX t_node ON demo.t (node)' })
    expect(ok.result, JSON.stringify(ok)).toMatchObject({
      outcome: 'committed',
      kind: 'create-index',
    })
    for (const id of IDS) expect(await hasIndex(id, 't_node')).toBe(true)
    expect((await rpc({ sql: 'VACUUM' })).error.code).toBe(-32602)
    await c.q(2, 'CREATE INDEX t_taken ON demo.t (node)')
    const no = await rpc({ sql: 'CREATE INDEX t_taken ON demo.t (n)' })
    expect(no.error.code).toBe(-32001)
    expect(no.error.data.outcome).toBe('aborted')
    await c.q(2, 'DROP INDEX demo.t_taken')

    const run = await ctl(0, 'ddl', 'DROP INDEX demo.t_node')
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/committed drop-index \(version \d+\) on nodes 0,1,2/)
    for (const id of IDS) expect(await hasIndex(id, 't_node')).toBe(false)
    const bad = await ctl(0, 'ddl', 'TRUNCATE demo.t')
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/refused \(400/)
  })
})

function ctl(
  i: number,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { TRAKTOR_URL: _u, TRAKTOR_API_KEY: _k, ...env } = process.env
  const proc = spawn(
    process.execPath,
    [BIN, 'ctl', '--url', c.api(i).url, '--api-key', KEY, ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    },
  )
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
  })
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout, stderr })))
}

describe('recovery of a schema change', () => {
  it('a statement still prepared for a change decided ABORT here is rolled back', async () => {
    // what a restarted coordinator leaves when a member asks it before its own recovery pass
    // runs: the answer records ABORT, the prepared statement still holds the table
    const id = randomUUID()
    const gid = `trktr_ddl_${id}`
    await c.q(
      1,
      'CREATE TABLE demo.leftover (id int); ALTER TABLE demo.leftover OWNER TO traktor_arbiter',
    )
    await c.q(
      1,
      `INSERT INTO trktr.proposals
         (id, version, op, schema_name, table_name, columns, coordinator, decision, decided)
       VALUES ($1, 0, 'ddl', 'demo', 'leftover', '{}', 1, 'abort', now())`,
      [id],
    )
    const s = await c.client(1)
    try {
      await s.query(
        `SET ROLE traktor_arbiter; BEGIN; ALTER TABLE demo.leftover ADD COLUMN x int;
         PREPARE TRANSACTION '${gid}'`,
      )
    } finally {
      await s.end()
    }
    await waitFor(
      async () =>
        (await c.q(1, 'SELECT 1 FROM pg_prepared_xacts WHERE gid = $1', [gid])).length === 0,
      15_000,
      'the prepared statement rolled back',
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${c.problems(1)}`)
    })
    // the log line follows the rollback it reports: read once the rollback is seen, it raced
    await waitFor(
      () => /rolled back a schema change decided ABORT/.test(c.api(1).logs()),
      5_000,
      'the rollback logged',
    )
    const column = await c.q(
      1,
      `SELECT 1 FROM pg_attribute WHERE attrelid = 'demo.leftover'::regclass AND attname = 'x'`,
    )
    expect(column).toHaveLength(0)
    await c.q(1, 'DROP TABLE demo.leftover')
  })
})
