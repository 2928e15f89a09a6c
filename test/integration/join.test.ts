// Issue 12: a node joins with the cluster's data, a gap-free copy under live writes. Three
// nodes hold 100,000 rows in three tables (one with TOASTed values); writers insert and update
// on all three throughout; a fourth arbiter starts with empty tables and, with no call, copies
// the data from a donor and subscribes where the copy ends. After the writers stop, every table
// is identical on all four nodes and holds exactly what the writers wrote.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  call,
  DB,
  MeshCluster,
  saveLogsOnFailure,
  TESTING_ENV,
  waitFor,
} from '../fixtures/mesh-cluster.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

let c: MeshCluster

const TABLES = ['demo.a', 'demo.b', 'demo.doc']
const PRELOAD = { a: 60_000, b: 39_600, doc: 400 }

const SCHEMA = `
CREATE TABLE demo.a (id bigint PRIMARY KEY, node int NOT NULL, v int NOT NULL, note text);
CREATE TABLE demo.b (k text PRIMARY KEY, n bigint NOT NULL, ts timestamptz);
CREATE TABLE demo.doc (id bigint PRIMARY KEY, node int NOT NULL, body text NOT NULL);
-- not replicated: a local transaction writes here first, so it holds an xid at the fence
CREATE TABLE demo.side (id bigint PRIMARY KEY);
-- stored out of line, uncompressed: the copy carries real TOAST values
ALTER TABLE demo.doc ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE demo.a OWNER TO traktor_arbiter;
ALTER TABLE demo.b OWNER TO traktor_arbiter;
ALTER TABLE demo.doc OWNER TO traktor_arbiter;`

/** ~6 kB of text that does not compress: out of line in demo.doc */
const BODY = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 200))`

/** One writer per node: each transaction inserts into a and updates a, b and doc. */
class Writer {
  private client: pg.Client | undefined
  private running: Promise<void> | undefined
  private stopped = false
  iterations = 0
  readonly inserted: number[] = []
  readonly docs: number[] = []

  constructor(
    private readonly node: number,
    private readonly server: PgServer,
    /** added to every new id: writers of a later test do not reuse ids */
    private readonly base = 0,
  ) {}

  async start(): Promise<void> {
    this.client = new pg.Client({
      host: '127.0.0.1',
      port: this.server.port,
      user: 'postgres',
      password: this.server.superPassword,
      database: DB,
    })
    await this.client.connect()
    this.running = this.loop()
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.running
    await this.client?.end()
  }

  private async loop(): Promise<void> {
    const q = this.client as pg.Client
    const i = this.node
    // rows only this node updates: no two nodes write one row (see README "How a node joins")
    const mine = (n: number) => n * 3 + i
    while (!this.stopped) {
      const n = this.iterations + 1
      const id = this.base + (i + 1) * 1_000_000 + n
      await q.query('BEGIN')
      await q.query(`INSERT INTO demo.a VALUES ($1, $2, 0, 'new')`, [id, i])
      const old = mine(Math.floor(Math.random() * (PRELOAD.a / 3)))
      await q.query(`UPDATE demo.a SET v = v + 1, note = 'by ' || $2 WHERE id = $1`, [old, i])
      const own = this.inserted[Math.floor(Math.random() * this.inserted.length)]
      if (own !== undefined) await q.query(`UPDATE demo.a SET v = v + 1 WHERE id = $1`, [own])
      const k = `k${mine(Math.floor(Math.random() * (PRELOAD.b / 3)))}`
      await q.query(`UPDATE demo.b SET n = n + 1, ts = now() WHERE k = $1`, [k])
      if (n % 10 === 0) {
        await q.query(`INSERT INTO demo.doc VALUES ($1, $2, ${BODY})`, [id, i])
        this.docs.push(id)
      }
      if (n % 7 === 0) {
        const d = mine(Math.floor(Math.random() * (PRELOAD.doc / 3)))
        await q.query(`UPDATE demo.doc SET body = ${BODY} WHERE id = $1`, [d])
      }
      await q.query('COMMIT')
      this.inserted.push(id)
      this.iterations = n
      await new Promise((r) => setTimeout(r, 2))
    }
  }
}

/** One parsed log line of an arbiter, found by its message. */
function logLine(id: number, msg: string): Record<string, unknown> | undefined {
  for (const line of (c.node(id).arbiter?.logs() ?? '').split('\n')) {
    if (!line.includes(msg)) continue
    try {
      const o = JSON.parse(line) as Record<string, unknown>
      if (o.msg === msg) return o
    } catch {}
  }
  return undefined
}

/** The join's log lines of an arbiter, for failure messages. */
function joinLog(id: number): string {
  return (c.node(id).arbiter?.logs() ?? '')
    .split('\n')
    .filter((l) => /"component":"(join|reconcile|sequences|membership|mesh)"/.test(l))
    .slice(-30)
    .join('\n')
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'join')
  for (const i of [0, 1, 2]) await c.q(i, SCHEMA)
  await Promise.all([0, 1, 2].map((i) => c.start(i)))
  await c.waitMeshed([0, 1, 2], 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${[0, 1, 2].map(joinLog).join('\n')}`)
  })
  await c.waitSubscribed([0, 1, 2])
  // setup, not the test: a proposal that timed out on a loaded machine is asked again
  for (const t of TABLES) {
    let last: unknown
    await waitFor(
      async () => {
        const r = await call(c.api(0), 'PUT', `/v1/cluster/replicaset/${t}`)
        last = r.json
        return [200, 201].includes(r.status)
      },
      60_000,
      `${t} replicated`,
      500,
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}: ${JSON.stringify(last)}\n${[0, 1, 2].map(joinLog).join('\n')}`,
      )
    })
  }
  await c.q(0, `INSERT INTO demo.a SELECT g, 0, 0, 'preload' FROM generate_series(0, $1 - 1) g`, [
    PRELOAD.a,
  ])
  await c.q(0, `INSERT INTO demo.b SELECT 'k' || g, 0, now() FROM generate_series(0, $1 - 1) g`, [
    PRELOAD.b,
  ])
  await c.q(0, `INSERT INTO demo.doc SELECT g, 0, ${BODY} FROM generate_series(0, $1 - 1) g`, [
    PRELOAD.doc,
  ])
  for (const t of TABLES) await c.converged([0, 1, 2], t, 30_000)
}, 300_000)

saveLogsOnFailure(() => c, 'join')

afterAll(async () => {
  await c?.destroy()
})

describe('a node joins with the cluster data', () => {
  it('copies every table under writes on all three nodes and ends identical on all four', async () => {
    const [server] = (await startServers(1, () => ({ name: 'join3', fast: true }))) as [PgServer]
    await c.addNode(3, server)
    await c.q(3, SCHEMA)
    const writers = [0, 1, 2].map((i) => new Writer(i, c.node(i).pg))
    try {
      await Promise.all(writers.map((w) => w.start()))
      await waitFor(() => writers.every((w) => w.iterations >= 20), 20_000, 'writers under way')
      // the copy waits 4 s once started, so that the node is seen while it copies
      const a3 = await c.start(3, { testing: { joinPauseMs: 4000 } }, TESTING_ENV, {
        readyMs: 90_000,
      })
      const seen = await waitFor(
        async () => {
          const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json?.nodes ?? []
          return nodes.find(
            (n: { node: number; join_state: string }) => n.node === 3 && n.join_state === 'copying',
          )
        },
        90_000,
        'node 0 sees node 3 copying',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 3: ${joinLog(3)}`)
      })
      expect(seen.join_percent).toBeTypeOf('number')
      const self = (await call(a3, 'GET', '/v1/cluster/nodes')).json.nodes[0]
      expect(self).toMatchObject({ node: 3, join_state: 'copying', join_copy: { tables: 3 } })
      // not healthy while copying, and it says why
      const health = await call(a3, 'GET', '/healthz')
      expect(health.status).toBe(503)
      expect(JSON.stringify(health.json)).toMatch(/node 3 is copying the cluster data/)
      const metrics = await (await fetch(`${a3.url}/metrics`)).text()
      expect(metrics).toMatch(/^traktor_join_copying 1$/m)
      // a local transaction that holds an xid when it reaches the fence: a member's slot made
      // on this node while it waits would wait for it, and the row would never reach them
      await waitFor(
        async () =>
          (await call(a3, 'GET', '/v1/cluster/nodes')).json.nodes[0].join_copy?.phase === 'copying',
        120_000,
        'node 3 copying its tables',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 3: ${joinLog(3)}`)
      })
      // fenced now: a local writer on the new node waits (it does not fail) until the copy is
      // in place
      let localDone = false
      const local = c
        .q(3, `INSERT INTO demo.a VALUES (9000000, 3, 0, 'local, during the copy')`)
        .then(() => {
          localDone = true
        })
      const tx = await c.client(3)
      await tx.query('BEGIN')
      await tx.query(`INSERT INTO demo.side VALUES (1)`)
      const [xid] = (await tx.query(`SELECT pg_current_xact_id_if_assigned()::text AS x`)).rows
      expect(xid?.x).not.toBeNull()
      let txDone = false
      const held = tx
        .query(`INSERT INTO demo.a VALUES (9000003, 3, 0, 'local, holding an xid at the fence')`)
        .then(() => tx.query('COMMIT'))
        .then(() => {
          txDone = true
        })
      await new Promise((r) => setTimeout(r, 1000))
      const state = (await call(a3, 'GET', '/v1/cluster/nodes')).json.nodes[0].join_state
      if (state === 'copying') {
        expect(localDone).toBe(false)
        expect(txDone).toBe(false)
      }
      await c.waitMeshed([0, 1, 2, 3], 90_000).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 3: ${joinLog(3)}`)
      })
      // the writers go on after the join: changes of every node flow to the new one
      const at = writers.map((w) => w.iterations)
      await waitFor(
        () => writers.every((w, i) => w.iterations >= (at[i] ?? 0) + 30),
        30_000,
        'writers going on after the join',
      )
      await local
      expect(localDone).toBe(true)
      await held
      await tx.end()
      expect(txDone).toBe(true)
      const after = await (await fetch(`${a3.url}/metrics`)).text()
      expect(after).toMatch(/^traktor_join_copying 0$/m)
      expect(after).toMatch(/^traktor_join_progress_percent 100$/m)
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    const joined = logLine(3, 'joined with the cluster data')
    expect(joined, c.problems(3)).toBeDefined()
    expect(joined?.rows as number).toBeGreaterThanOrEqual(PRELOAD.a + PRELOAD.b + PRELOAD.doc)
    const { ms, rows, donorPauseMs } = joined ?? {}
    console.info(`join figures: ${JSON.stringify({ ms, rows, donorPauseMs })}`)
    const nodes = [0, 1, 2, 3]
    for (const t of TABLES) await c.converged(nodes, t, 60_000)
    // exactly what was written: every insert, every increment
    const inserts = writers.reduce((s, w) => s + w.iterations, 0)
    const docs = writers.reduce((s, w) => s + w.docs.length, 0)
    for (const id of nodes) {
      const [a] = await c.q(id, `SELECT count(*)::int AS n FROM demo.a`)
      expect(a?.n).toBe(PRELOAD.a + inserts + 2)
      const [b] = await c.q(id, `SELECT count(*)::int AS rows, sum(n)::int AS n FROM demo.b`)
      expect(b).toEqual({ rows: PRELOAD.b, n: inserts })
      const [d] = await c.q(id, `SELECT count(*)::int AS n FROM demo.doc`)
      expect(d?.n).toBe(PRELOAD.doc + docs)
      const [r] = await c.q(id, `SELECT note FROM demo.a WHERE id = 9000000`)
      expect(r?.note).toBe('local, during the copy')
      const [x] = await c.q(id, `SELECT note FROM demo.a WHERE id = 9000003`)
      expect(x?.note).toBe('local, holding an xid at the fence')
    }
    // the copied bodies are out of line (TOAST), as on the donor
    const [toast] = await c.q(
      3,
      `SELECT pg_relation_size(reltoastrelid) > 1000000 AS big FROM pg_class WHERE oid = 'demo.doc'::regclass`,
    )
    expect(toast?.big).toBe(true)
  }, 360_000)

  it('copies a node again on ctl resync: the cure for a lost slot', async () => {
    // node 3 loses its slot on node 0: what node 0 writes from now on never reaches it
    await waitFor(
      async () => {
        const [s] = await c.q(
          0,
          `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'trktr_sub_3_0'`,
        )
        if (!s) return true
        if (s.active_pid !== null) await c.q(0, `SELECT pg_terminate_backend($1)`, [s.active_pid])
        else await c.q(0, `SELECT pg_drop_replication_slot('trktr_sub_3_0')`).catch(() => {})
        return false
      },
      20_000,
      'the slot of node 3 on node 0 dropped',
    )
    await c.q(0, `INSERT INTO demo.a VALUES (9000001, 0, 0, 'after the slot was lost')`)
    await c.q(0, `UPDATE demo.b SET n = n + 1000 WHERE k = 'k0'`)
    await c.converged([0, 1, 2], 'demo.a', 30_000)
    const [lost] = await c.q(3, `SELECT count(*)::int AS n FROM demo.a WHERE id = 9000001`)
    expect(lost?.n).toBe(0)
    // asked on another node; bad input changes nothing
    expect((await call(c.api(1), 'POST', '/v1/cluster/nodes/x/resync')).status).toBe(400)
    expect((await call(c.api(1), 'POST', '/v1/cluster/nodes/42/resync')).status).toBe(404)
    const r = await call(c.api(1), 'POST', '/v1/cluster/nodes/3/resync')
    expect(r.status, JSON.stringify(r.json)).toBe(202)
    expect(r.json).toEqual({ node: 3, join_state: 'copying' })
    await waitFor(
      () =>
        (c.node(3).arbiter?.logs() ?? '')
          .split('\n')
          .filter((l) => l.includes('"msg":"joined with the cluster data"')).length === 2,
      120_000,
      'node 3 copied again',
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nnode 3: ${joinLog(3)}`)
    })
    await c.waitMeshed([0, 1, 2, 3], 60_000)
    await c.waitSubscribed([0, 1, 2, 3], 60_000)
    await c.q(1, `INSERT INTO demo.a VALUES (9000002, 1, 0, 'after the resync')`)
    for (const t of TABLES) await c.converged([0, 1, 2, 3], t, 60_000)
    const rows = await c.q(3, `SELECT id FROM demo.a WHERE id IN (9000001, 9000002) ORDER BY id`)
    expect(rows.map((x) => Number(x.id))).toEqual([9000001, 9000002])
  }, 240_000)

  it('starts the copy over when the joining arbiter is killed mid-copy, under writes', async () => {
    const [server] = (await startServers(1, () => ({ name: 'join4', fast: true }))) as [PgServer]
    await c.addNode(4, server)
    await c.q(4, SCHEMA)
    const [before] = await c.q(0, `SELECT count(*)::int AS n FROM demo.a`)
    const writers = [0, 1, 2].map((i) => new Writer(i, c.node(i).pg, 10_000_000))
    try {
      await Promise.all(writers.map((w) => w.start()))
      const a4 = await c.start(4, { testing: { joinPauseMs: 5000 } }, TESTING_ENV, {
        readyMs: 90_000,
      })
      await waitFor(
        async () => {
          const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json?.nodes ?? []
          return nodes.some(
            (n: { node: number; join_state: string }) => n.node === 4 && n.join_state === 'copying',
          )
        },
        90_000,
        'node 0 sees node 4 copying',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 4: ${joinLog(4)}`)
      })
      // killed while it holds the donor's snapshot, with its fences and disabled subscriptions:
      // only once node 4 itself says it is copying its tables (not merely about to)
      await waitFor(
        async () =>
          (await call(a4, 'GET', '/v1/cluster/nodes')).json?.nodes?.[0]?.join_copy?.phase ===
          'copying',
        90_000,
        'node 4 copying its tables',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 4: ${joinLog(4)}`)
      })
      a4.proc.kill('SIGKILL')
      await a4.stop()
      await c.start(4, {}, {}, { readyMs: 90_000 })
      await c.waitMeshed([0, 1, 2, 3, 4], 180_000).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 4: ${joinLog(4)}`)
      })
      const at = writers.map((w) => w.iterations)
      await waitFor(
        () => writers.every((w, i) => w.iterations >= (at[i] ?? 0) + 30),
        30_000,
        'writers going on after the join',
      )
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    expect(logLine(4, 'joined with the cluster data'), c.problems(4)).toBeDefined()
    expect(c.node(4).arbiter?.logs()).toMatch(/an interrupted copy starts over/)
    const nodes = [0, 1, 2, 3, 4]
    for (const t of TABLES) await c.converged(nodes, t, 90_000)
    const inserts = writers.reduce((s, w) => s + w.iterations, 0)
    const [after] = await c.q(4, `SELECT count(*)::int AS n FROM demo.a`)
    expect(after?.n).toBe((before?.n ?? 0) + inserts)
  }, 420_000)

  it('a 5th node joining while another still copies waits its turn; both end identical', async () => {
    const servers = (await startServers(2, (i) => ({ name: `join${5 + i}`, fast: true }))) as [
      PgServer,
      PgServer,
    ]
    await c.addNode(5, servers[0])
    await c.addNode(6, servers[1])
    await c.q(5, SCHEMA)
    await c.q(6, SCHEMA)
    const writers = [0, 1, 2].map((i) => new Writer(i, c.node(i).pg, 20_000_000))
    const [before] = await c.q(0, `SELECT count(*)::int AS n FROM demo.a`)
    try {
      await Promise.all(writers.map((w) => w.start()))
      // node 5 copies slowly (a pause before its tables), node 6 starts while it does: on
      // this 2-core machine with seven servers, node 6 may take half a minute to decide
      const t5 = Date.now()
      const a5 = await c.start(5, { testing: { joinPauseMs: 45_000 } }, TESTING_ENV, {
        readyMs: 90_000,
      })
      let seen: unknown
      await waitFor(
        async () => {
          seen = (await call(a5, 'GET', '/v1/cluster/nodes')).json?.nodes
          return (
            (seen as Array<{ join_copy?: { phase?: string } }>)?.[0]?.join_copy?.phase === 'copying'
          )
        },
        90_000,
        'node 5 copying its tables',
      ).catch((err: Error) => {
        throw new Error(
          `${err.message}\nnode 5 sees ${JSON.stringify(seen)}\nnode 5: ${joinLog(5)}`,
        )
      })
      console.log(`node 5 copying ${Date.now() - t5} ms after its start`)
      await c.start(6, {}, {}, { readyMs: 90_000 })
      // the second one waits for the first instead of copying beside it
      await waitFor(
        () => /waiting for another node to finish its copy/.test(c.node(6).arbiter?.logs() ?? ''),
        60_000,
        'node 6 waiting for node 5',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 6: ${joinLog(6)}`)
      })
      await c.waitMeshed([0, 1, 2, 3, 4, 5, 6], 180_000).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 5: ${joinLog(5)}\nnode 6: ${joinLog(6)}`)
      })
      const at = writers.map((w) => w.iterations)
      await waitFor(
        () => writers.every((w, i) => w.iterations >= (at[i] ?? 0) + 30),
        30_000,
        'writers going on after the joins',
      )
      // node 5's rows written after it joined reach node 6 too
      await c.q(5, `INSERT INTO demo.a VALUES (9000005, 5, 0, 'on node 5 after its join')`)
      await c.q(6, `INSERT INTO demo.a VALUES (9000006, 6, 0, 'on node 6 after its join')`)
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    for (const id of [5, 6])
      expect(logLine(id, 'joined with the cluster data'), c.problems(id)).toBeDefined()
    const nodes = [0, 1, 2, 3, 4, 5, 6]
    for (const t of TABLES) await c.converged(nodes, t, 90_000)
    const inserts = writers.reduce((s, w) => s + w.iterations, 0)
    for (const id of nodes) {
      const [after] = await c.q(id, `SELECT count(*)::int AS n FROM demo.a`)
      expect(after?.n, `node ${id}`).toBe((before?.n ?? 0) + inserts + 2)
    }
  }, 480_000)
})
