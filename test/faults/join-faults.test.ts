// Issue 12, faults: a join that loses its donor's PostgreSQL, or its own, or the donor's
// arbiter in the middle of the copy starts over (or carries on once the part is back) and ends
// with every row on every node: no duplicate key, no half table, nothing the writers committed
// missing. Real PostgreSQL 17 servers crashed with `pg_ctl -m immediate`, a real arbiter
// SIGKILLed, real arbiters, writers throughout.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, DB, MeshCluster, TESTING_ENV, waitFor } from '../fixtures/mesh-cluster.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

let c: MeshCluster
const PRELOAD = 5000
const SCHEMA = `
CREATE TABLE demo.a (id bigint PRIMARY KEY, node int NOT NULL, v int NOT NULL);
ALTER TABLE demo.a OWNER TO traktor_arbiter;`

/** Inserts (and updates of its own rows) on one node until stopped; counts what committed. */
class Writer {
  private client: pg.Client | undefined
  private running: Promise<void> | undefined
  private stopped = false
  committed = 0

  constructor(
    private readonly node: number,
    private readonly server: PgServer,
    private readonly base: number,
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
    while (!this.stopped) {
      const id = this.base + this.node * 1_000_000 + this.committed + 1
      await q.query('BEGIN')
      await q.query(`INSERT INTO demo.a VALUES ($1, $2, 0)`, [id, this.node])
      if (this.committed > 0)
        await q.query(`UPDATE demo.a SET v = v + 1 WHERE id = $1`, [
          id - 1 - Math.floor(Math.random() * Math.min(this.committed, 50)),
        ])
      await q.query('COMMIT')
      this.committed++
      await new Promise((r) => setTimeout(r, 3))
    }
  }
}

function joinLog(id: number): string {
  return (c.node(id).arbiter?.logs() ?? '')
    .split('\n')
    .filter((l) => /"component":"(join|reconcile)"/.test(l))
    .slice(-20)
    .join('\n')
}

/** Node `id` (a new server) starts and pauses 6 s in the middle of its copy; resolves then. */
async function joinPaused(id: number): Promise<void> {
  const [server] = (await startServers(1, () => ({ name: `joinf${id}`, fast: true }))) as [PgServer]
  await c.addNode(id, server)
  await c.q(id, SCHEMA)
  const a = await c.start(id, { testing: { joinPauseMs: 6000 } }, TESTING_ENV, {
    readyMs: 90_000,
  })
  await waitFor(
    async () =>
      (await call(a, 'GET', '/v1/cluster/nodes')).json?.nodes?.[0]?.join_copy?.phase === 'copying',
    120_000,
    `node ${id} copying its tables`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nnode ${id}: ${joinLog(id)}`)
  })
}

/** The node a joining node copies from, as it reports it. */
async function donorOf(id: number): Promise<number | undefined> {
  return (await call(c.api(id), 'GET', '/v1/cluster/nodes')).json.nodes[0].join_copy?.donor
}

/** Every node meshed and ready with the joiner among them, and the writers still going. */
async function joinedUnderWrites(nodes: number[], joiner: number, writers: Writer[]) {
  await c.waitMeshed(nodes, 180_000).catch((err: Error) => {
    throw new Error(`${err.message}\nnode ${joiner}: ${joinLog(joiner)}`)
  })
  const at = writers.map((w) => w.committed)
  await waitFor(
    () => writers.every((w, i) => w.committed >= (at[i] ?? 0) + 30),
    30_000,
    'writers going on after the join',
  )
}

/** After the writers stop: identical everywhere, and exactly the rows that committed. */
async function exact(nodes: number[], writers: Writer[], before: number): Promise<void> {
  await c.converged(nodes, 'demo.a', 90_000)
  const inserts = writers.reduce((s, w) => s + w.committed, 0)
  for (const id of nodes) {
    const [r] = await c.q(id, `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM demo.a`)
    expect(r, `node ${id}`).toEqual({ n: before + inserts, d: before + inserts })
  }
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'joinf')
  for (const i of [0, 1, 2]) await c.q(i, SCHEMA)
  await Promise.all([0, 1, 2].map((i) => c.start(i)))
  await c.waitMeshed([0, 1, 2], 60_000)
  await c.waitSubscribed([0, 1, 2])
  await waitFor(
    async () =>
      [200, 201].includes((await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.a')).status),
    60_000,
    'demo.a replicated',
    500,
  )
  await c.q(0, `INSERT INTO demo.a SELECT g, 0, 0 FROM generate_series(1, $1) g`, [PRELOAD])
  await c.converged([0, 1, 2], 'demo.a', 30_000)
}, 300_000)

afterAll(async () => {
  await c?.destroy()
})

describe('a join under faults', () => {
  it("the donor's PostgreSQL crashes mid-copy: the join starts over and ends identical", async () => {
    const [b] = await c.q(0, `SELECT count(*)::int AS n FROM demo.a`)
    // writers on the members that stay up; node 0 (the donor: the lowest id) crashes
    const writers = [1, 2].map((i) => new Writer(i, c.node(i).pg, 10_000_000))
    try {
      await Promise.all(writers.map((w) => w.start()))
      await joinPaused(3)
      expect(await donorOf(3)).toBe(0)
      await c.node(0).pg.crash('immediate')
      await waitFor(
        () => /"msg":"join copy failed"/.test(c.node(3).arbiter?.logs() ?? ''),
        60_000,
        'node 3 sees its copy fail',
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 3: ${joinLog(3)}`)
      })
      await c.node(0).pg.start()
      await joinedUnderWrites([0, 1, 2, 3], 3, writers)
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    expect(c.node(3).arbiter?.logs()).toMatch(/"msg":"joined with the cluster data"/)
    await exact([0, 1, 2, 3], writers, b?.n ?? 0)
  }, 420_000)

  it("the joining node's own PostgreSQL restarts mid-copy: the join goes on and ends identical", async () => {
    const [b] = await c.q(0, `SELECT count(*)::int AS n FROM demo.a`)
    const writers = [0, 1, 2].map((i) => new Writer(i, c.node(i).pg, 20_000_000))
    try {
      await Promise.all(writers.map((w) => w.start()))
      await joinPaused(4)
      await c.node(4).pg.crash('immediate')
      await c.node(4).pg.start()
      await joinedUnderWrites([0, 1, 2, 3, 4], 4, writers)
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    expect(c.node(4).arbiter?.logs()).toMatch(/"msg":"joined with the cluster data"/)
    await exact([0, 1, 2, 3, 4], writers, b?.n ?? 0)
  }, 420_000)

  it("the donor's arbiter is killed mid-copy: the join still ends identical", async () => {
    const [b] = await c.q(0, `SELECT count(*)::int AS n FROM demo.a`)
    const writers = [1, 2, 3, 4].map((i) => new Writer(i, c.node(i).pg, 30_000_000))
    try {
      await Promise.all(writers.map((w) => w.start()))
      await joinPaused(5)
      expect(await donorOf(5)).toBe(0)
      // the donor's arbiter dies without a word; its PostgreSQL stays up
      const killed = c.api(0)
      killed.proc.kill('SIGKILL')
      expect(await killed.stop()).toBe(null)
      await waitFor(
        async () => {
          const nodes = (await call(c.api(5), 'GET', '/v1/cluster/nodes')).json?.nodes ?? []
          return nodes.some(
            (n: { node: number; state: string }) => n.node === 0 && n.state === 'dead',
          )
        },
        30_000,
        'node 5 sees the donor dead',
      )
      await c.start(0)
      await joinedUnderWrites([0, 1, 2, 3, 4, 5], 5, writers)
    } finally {
      await Promise.all(writers.map((w) => w.stop()))
    }
    expect(c.node(5).arbiter?.logs()).toMatch(/"msg":"joined with the cluster data"/)
    await exact([0, 1, 2, 3, 4, 5], writers, b?.n ?? 0)
  }, 420_000)
})
