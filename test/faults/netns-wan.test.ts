// A slow and lossy network from outside the processes (issue 16): three nodes, each in its own
// network namespace, PostgreSQL with fsync on. Every connection between two nodes (libp2p and
// PostgreSQL's replication alike) is delayed 40 ms each way, and node 1 drops 3 % of its data
// packets at random, both ways. The kernel here has no netem: the loss is nftables'
// `numgen random` in node 1's namespace, the delay a relay in the test process that every
// connection between nodes is sent through (DNAT). Under the bank + event-log workload on every
// node, a table is added to the replicaset; after quiesce the history checker finds every
// acknowledged write on every node, the total held, and identical rows everywhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DelayRelay } from '../fixtures/delay-relay.js'
import { History, openBank, verifyQuiesced, WORKLOAD_DDL } from '../fixtures/history.js'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'
import { NetLab } from '../fixtures/netlab.js'

const IDS = [0, 1, 2]
const DELAY_MS = 40
const LOSS_PER_MILLE = 30
let net: NetLab | undefined
let c: MeshCluster | undefined
let relay: DelayRelay | undefined

beforeAll(async () => {
  net = await NetLab.create(IDS.length)
  c = await MeshCluster.create(IDS.length, 'wan', {}, { net, durable: true })
  const cl = c
  for (const i of IDS) {
    await cl.q(i, WORKLOAD_DDL)
    await cl.q(
      i,
      'CREATE TABLE demo.notes (id int PRIMARY KEY, body text); ALTER TABLE demo.notes OWNER TO traktor_arbiter',
    )
  }
  // before any node connects to another: every such connection takes the slow path
  relay = await net.delay(
    DELAY_MS,
    IDS.flatMap((i) => [
      { node: i, port: cl.node(i).pg.port },
      { node: i, port: cl.node(i).meshPort },
    ]),
  )
  await net.lossy(1, LOSS_PER_MILLE)
  await Promise.all(IDS.map((i) => cl.start(i)))
  await openBank(cl, IDS, 30_000)
})

afterAll(async () => {
  await c?.destroy()
  await net?.destroy()
})

describe('a slow, lossy network: 40 ms each way between nodes, 3 % loss on node 1', () => {
  const h = new History()
  let stop = false
  let writers: Promise<void>[] = []

  it('replication and the mesh take the slow path, and node 1 drops packets', async () => {
    const cl = c as MeshCluster
    const lab = net as NetLab
    // every walsender on node 0 serves a peer through the relay, not over the bridge
    const senders = await cl.q(0, 'SELECT client_addr::text AS a FROM pg_stat_replication')
    expect(senders.length).toBeGreaterThanOrEqual(2)
    for (const s of senders) expect(s.a).toBe(`${lab.hostIp(0)}/32`)
    // a row written on node 0 reaches node 2 one delay later at the soonest (timed from before
    // the INSERT: its WAL may leave before the commit's answer is back here; once, 39 ms)
    const t0 = Date.now()
    await cl.q(0, 'INSERT INTO demo.accounts VALUES (9000, 0, 0)')
    await waitFor(
      async () => (await cl.q(2, 'SELECT 1 FROM demo.accounts WHERE id = 9000')).length === 1,
      10_000,
      'the row on node 2',
      5,
    )
    const lag = Date.now() - t0
    expect(lag).toBeGreaterThanOrEqual(DELAY_MS)
    await cl.q(0, 'DELETE FROM demo.accounts WHERE id = 9000')
    writers = IDS.map((i) => h.writer(cl, i, () => stop))
    await waitFor(
      async () => IDS.every((i) => (h.stats.get(i)?.ok ?? 0) > 50) && (await lab.lost(1)) > 0,
      30_000,
      'writes on all, and packets lost on node 1',
    )
    console.info(
      `wan: replication lag ${lag} ms; relay ${relay?.connections} connections, ${relay?.delayedBytes} bytes; node 1 lost ${await lab.lost(1)} packets`,
    )
  })

  it('a table is added to the replicaset under the slow network, on every node', async () => {
    const cl = c as MeshCluster
    const t0 = Date.now()
    const r = await call(cl.api(1), 'PUT', '/v1/cluster/replicaset/demo.notes')
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    const took = Date.now() - t0
    for (const i of IDS) {
      const rs = (await call(cl.api(i), 'GET', '/v1/cluster/replicaset')).json
      expect(JSON.stringify(rs)).toContain('demo.notes')
    }
    await cl.q(2, "INSERT INTO demo.notes VALUES (1, 'over a slow link')")
    expect(await cl.converged(IDS, 'demo.notes', 30_000)).toMatch(/^1 rows/)
    console.info(`wan: the change took ${took} ms`)
  })

  // its own deadlines (60 s for the first table, 30 s for each next) exceed the suite's 60 s
  // test timeout: without this, a slow convergence ended as a bare timeout, not with the rows
  // that differ (CI on bb2de72)
  it('after quiesce: no acknowledged write lost, the total held, identical rows everywhere', async () => {
    const cl = c as MeshCluster
    const before = IDS.map((i) => h.stats.get(i)?.ok ?? 0)
    await waitFor(
      () => IDS.every((i, k) => (h.stats.get(i)?.ok ?? 0) > (before[k] ?? 0) + 100),
      60_000,
      '100 more writes on every node',
    )
    stop = true
    await Promise.all(writers)
    const tables = ['demo.events', 'demo.accounts', 'demo.notes']
    await verifyQuiesced(cl, IDS, h, { tables, via: 2, minAcked: 300 })
    console.info(
      `wan history: ${h.acked.size} acknowledged, ${h.unknown.size} unknown; node 1 lost ${await (net as NetLab).lost(1)} packets`,
    )
  }, 150_000)
})
