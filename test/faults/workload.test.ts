// Faults 2-5 under a bank workload: transfers between accounts on every node (one account
// range per node, so writes do not conflict) while (2) a PostgreSQL server is stopped and
// restarted, (3) an arbiter is frozen with SIGSTOP past the failure timeout, then resumed,
// (4) the mesh between two arbiters is cut while replication goes on. The total never changes
// on any node; afterwards every node holds identical data, no arbiter took a false action
// (subscriptions unchanged), and nothing is orphaned.
// The hot-row variant (issue 10): every node moves money between the same few accounts, so
// concurrent updates of one row on several nodes are the rule. Last writer wins keeps one of
// them (the total is not kept, and alone it could not see divergence anyway): after each fault
// and a quiesce, every node holds an identical table.
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  call,
  MeshCluster,
  saveLogsOnFailure,
  TESTING_ENV,
  waitFor,
} from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]
const ACCOUNTS_PER_NODE = 20
const TOTAL = IDS.length * ACCOUNTS_PER_NODE * 1000
const HOT_ACCOUNTS = 4

type Stats = { ok: number; failed: number; lastError?: string }
/** the two accounts of one transfer by node i */
type Pick = (i: number) => [number, number]
const ownAccounts: Pick = (i) => [
  i * 100 + Math.floor(Math.random() * ACCOUNTS_PER_NODE),
  i * 100 + Math.floor(Math.random() * ACCOUNTS_PER_NODE),
]
const hotAccounts: Pick = () => [
  Math.floor(Math.random() * HOT_ACCOUNTS),
  Math.floor(Math.random() * HOT_ACCOUNTS),
]

async function subscriptionOids(): Promise<string> {
  const all = await Promise.all(
    IDS.map((i) =>
      c.q(i, `SELECT oid::int8 AS oid, subname FROM pg_subscription ORDER BY subname`),
    ),
  )
  return JSON.stringify(all)
}

async function fingerprint(i: number): Promise<string> {
  const [r] = await c.q(
    i,
    `SELECT count(*)::int AS n, sum(balance)::int8 AS total,
      md5(string_agg(id || ':' || balance, ',' ORDER BY id)) AS md5 FROM demo.accounts`,
  )
  return `${r?.n}/${r?.total}/${r?.md5}`
}

/** Transfers on one node until stopped; survives its server going away. */
function bank(
  i: number,
  stop: () => boolean,
  stats: Stats,
  pick: Pick = ownAccounts,
  table = 'demo.accounts',
) {
  return (async () => {
    let client: pg.Client | undefined
    while (!stop()) {
      try {
        if (!client) client = await c.reconnect(i, stop)
        if (!client) break
        const [a, b] = pick(i)
        const x = 1 + Math.floor(Math.random() * 50)
        await client.query('BEGIN')
        await client.query(`UPDATE ${table} SET balance = balance - $1 WHERE id = $2`, [x, a])
        await client.query(`UPDATE ${table} SET balance = balance + $1 WHERE id = $2`, [x, b])
        await client.query('COMMIT')
        stats.ok++
      } catch (err) {
        stats.failed++
        stats.lastError = (err as Error).message
        await client?.end().catch(() => undefined)
        client = undefined
      }
    }
    await client?.end().catch(() => undefined)
  })()
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'bank')
  for (const i of IDS) {
    await c.q(
      i,
      `CREATE TABLE demo.accounts (id int PRIMARY KEY, node int NOT NULL, balance bigint NOT NULL);
      ALTER TABLE demo.accounts OWNER TO traktor_arbiter;
      CREATE TABLE demo.hot (id int PRIMARY KEY, node int NOT NULL, balance bigint NOT NULL);
      ALTER TABLE demo.hot OWNER TO traktor_arbiter`,
    )
  }
  await Promise.all(IDS.map((i) => c.start(i, { testing: { routes: true } }, TESTING_ENV)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  for (const t of ['demo.accounts', 'demo.hot']) {
    const r = await call(c.api(0), 'PUT', `/v1/cluster/replicaset/${t}`)
    expect(r.status, JSON.stringify(r.json)).toBe(201)
  }
  await c.q(
    0,
    `INSERT INTO demo.hot SELECT g, 0, 1000 FROM generate_series(0, ${HOT_ACCOUNTS - 1}) g`,
  )
  await c.converged(IDS, 'demo.hot')
  for (const i of IDS) {
    await c.q(
      i,
      `INSERT INTO demo.accounts SELECT $1::int * 100 + g, $1, 1000 FROM generate_series(0, ${ACCOUNTS_PER_NODE - 1}) g`,
      [i],
    )
  }
  for (const i of IDS) {
    await waitFor(
      async () => (await fingerprint(i)).startsWith(`${IDS.length * ACCOUNTS_PER_NODE}/${TOTAL}/`),
      15_000,
      `accounts on node ${i}`,
    )
  }
})

afterAll(async () => {
  await c?.destroy()
})

/** what each node did since `from`, and its last failure: for a timeout's message */
function counts(stats: Stats[], from: number[]): string {
  return stats
    .map((s, i) => {
      const why = s.lastError ? ` (last: ${s.lastError})` : ''
      return `node ${i} ok+${s.ok - (from[i] ?? 0)} failed ${s.failed}${why}`
    })
    .join(', ')
}

/** (2) a PostgreSQL server stopped and restarted under load */
async function restartPostgres(stats: Stats[]): Promise<void> {
  await c.node(1).pg.stop()
  await waitFor(() => (stats[0]?.ok ?? 0) > 200, 10_000, 'load while node 1 is down')
  await c.node(1).pg.start()
}

/** (3) an arbiter frozen past the failure timeout, then resumed */
async function freezeArbiter(): Promise<void> {
  const frozen = c.api(2).proc
  frozen.kill('SIGSTOP')
  await waitFor(
    async () => {
      const nodes = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
      return nodes.find((n: { node: number }) => n.node === 2)?.state === 'dead'
    },
    10_000,
    'frozen arbiter seen dead',
  )
  frozen.kill('SIGCONT')
  await c.waitMeshed(IDS)
}

/**
 * (4) the mesh between arbiters 0 and 1 cut (both sides), replication going on, until every
 * node made `load` transfers. The hot-row variant asks fewer: there a node's transfer often
 * waits for an apply worker's lock, and a deadlock between the two costs deadlock_timeout (1 s);
 * a node made 5 transfers a second for seconds in a run on two busy cores.
 */
async function cutMesh(stats: Stats[], load = 100): Promise<void> {
  for (const [from, to] of [
    [0, 1],
    [1, 0],
  ] as const) {
    const cut = await call(c.api(from), 'PUT', '/v1/testing/partition', { nodes: [to] })
    expect(cut.status, JSON.stringify(cut.json)).toBe(200)
    expect(cut.json.peers).toHaveLength(1)
  }
  const during = stats.map((s) => s.ok)
  await waitFor(
    () => {
      if (stats.every((s, i) => s.ok > (during[i] ?? 0) + load)) return true
      throw new Error(`transfers ${counts(stats, during)}`)
    },
    15_000,
    'load during the partition',
  )
  for (const i of [0, 1])
    expect((await call(c.api(i), 'DELETE', '/v1/testing/partition')).status).toBe(200)
  await c.waitMeshed(IDS)
}

// the arbiters' logs of a failed test go to .tmp/failed-logs (a divergence is read there)
saveLogsOnFailure(() => c, 'workload')

describe('bank workload through faults', () => {
  it('keeps every total, converges to identical data, takes no false action', async () => {
    let stop = false
    const stats = IDS.map((): Stats => ({ ok: 0, failed: 0 }))
    const workers = IDS.map((i) => bank(i, () => stop, stats[i] as Stats))
    const bad: string[] = []
    // every node's total, sampled every 100 ms until the load stops (the test's own deadline)
    const sampler = waitFor(
      async () => {
        for (const i of IDS) {
          if (!c.node(i).pg.running) continue
          const [r] = await c
            .q(i, 'SELECT sum(balance)::int8 AS t FROM demo.accounts')
            .catch(() => [undefined])
          if (r && Number(r.t) !== TOTAL) bad.push(`node ${i}: total ${r.t}`)
        }
        return stop
      },
      600_000,
      'the load to stop',
    )
    const subsBefore = await subscriptionOids()
    await waitFor(() => stats.every((s) => s.ok > 20), 10_000, 'transfers on every node')

    try {
      await restartPostgres(stats)
      await freezeArbiter()
      await cutMesh(stats)
    } finally {
      // a failed fault step stops the load too (left running it outlives the file)
      stop = true
      await Promise.all([...workers, sampler])
    }
    expect(bad).toEqual([])
    // identical data everywhere once replication has caught up
    await waitFor(
      async () => new Set(await Promise.all(IDS.map(fingerprint))).size === 1,
      30_000,
      'identical data on every node',
    )
    expect((await fingerprint(0)).split('/')[1]).toBe(String(TOTAL))
    // no false action: the same subscriptions (same oids) as before the faults, all enabled
    expect(await subscriptionOids()).toBe(subsBefore)
    for (const i of IDS) {
      const subs = await c.q(i, `SELECT subname FROM pg_subscription WHERE subenabled ORDER BY 1`)
      expect(subs.map((s) => s.subname)).toEqual(
        IDS.filter((j) => j !== i).map((j) => `trktr_sub_${i}_${j}`),
      )
      const slots = await c.q(i, `SELECT slot_name FROM pg_replication_slots ORDER BY 1`)
      expect(slots.map((s) => s.slot_name)).toEqual(
        IDS.filter((j) => j !== i).map((j) => `trktr_sub_${j}_${i}`),
      )
      expect(await c.q(i, 'SELECT gid FROM pg_prepared_xacts')).toEqual([])
      expect(await c.q(i, 'SELECT id FROM trktr.proposals WHERE decision IS NULL')).toEqual([])
    }
    // and the control plane works: a change commits
    for (const i of IDS)
      await c.q(
        i,
        `CREATE TABLE demo.after (id int PRIMARY KEY); ALTER TABLE demo.after OWNER TO traktor_arbiter`,
      )
    const r = await call(c.api(2), 'PUT', '/v1/cluster/replicaset/demo.after')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    console.info(
      `bank: ${stats.map((s) => s.ok).join('/')} transfers (failed while a server was down: ${stats.map((s) => s.failed).join('/')})`,
    )
  })

  it('hot rows: all nodes move money between the same accounts, identical md5 after each fault', async () => {
    const transfers: string[] = []
    const phase = async (name: string, fault: (stats: Stats[]) => Promise<void>) => {
      const t0 = Date.now()
      let stop = false
      const stats = IDS.map((): Stats => ({ ok: 0, failed: 0 }))
      const workers = IDS.map((i) =>
        bank(i, () => stop, stats[i] as Stats, hotAccounts, 'demo.hot'),
      )
      try {
        await waitFor(
          () => stats.every((s) => s.ok > 20),
          10_000,
          `${name}: transfers on every node`,
        )
        await fault(stats)
        const after = stats.map((s) => s.ok)
        await waitFor(
          () => stats.every((s, i) => s.ok > (after[i] ?? 0) + 20),
          15_000,
          `${name}: transfers after the fault`,
        )
      } finally {
        stop = true
        await Promise.all(workers)
      }
      transfers.push(
        `${stats.map((s) => s.ok).join('+')} in ${Date.now() - t0} ms (failed ${stats.map((s) => s.failed).join('+')}: ${stats.map((s) => s.lastError ?? '-').join(' | ')})`,
      )
      const quiesced = Date.now()
      // quiesced: every node holds the same table (the total alone could not tell)
      const md5 = await c.converged(IDS, 'demo.hot', 60_000).catch((err: Error) => {
        throw new Error(`after ${name}: ${err.message}`)
      })
      expect(md5, name).toMatch(new RegExp(`^${HOT_ACCOUNTS} rows`))
      const ids = await c.q(0, 'SELECT id FROM demo.hot ORDER BY id')
      expect(ids.map((r) => r.id)).toEqual([...Array(HOT_ACCOUNTS).keys()])
      // as it goes: a run that times out shows how far it got
      console.info(
        `hot rows, ${name}: ${transfers.at(-1)}; converged ${Date.now() - quiesced} ms after`,
      )
    }
    await phase('a PostgreSQL server restarted', restartPostgres)
    await phase('an arbiter frozen', freezeArbiter)
    await phase('the mesh cut', (stats) => cutMesh(stats, 20))
    // the accounts table of the first test is untouched and identical everywhere
    await c.converged(IDS, 'demo.accounts')
    console.info(`hot rows: transfers in the three phases: ${transfers.join(', ')}`)
    // three phases, each with its own deadlines (load 10 s, after the fault 15 s, converged
    // 60 s): 18 s alone, but past vitest's 60 s once beside the coordinator-crash file in CI
    // (a330c50's CI passed, 63254dd's timed out with no deadline of its own missed)
  }, 240_000)
})
