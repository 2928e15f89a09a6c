// Faults from outside the processes (issue 16): every node — its PostgreSQL, with fsync on, and
// its arbiter — runs in its own network namespace. Under a bank + event-log workload on every
// node: (1) a real partition (node 2's data link on another bridge) cuts libp2p and PostgreSQL's
// replication connections alike, while every side keeps taking writes; (2) node 1's data link
// is throttled both ways (a token bucket: no netem on this kernel, so the delay is queueing
// and the loss is what overflows the queue); (3) node 1's postmaster is SIGKILLed; (4) node
// 2's PostgreSQL shuts down immediately (pg_ctl -m immediate). After
// quiesce the history checker finds every acknowledged write on every node, the bank total
// held, and identical rows everywhere — and it does find a lost write when one is made.
// Where namespaces cannot be made this file fails, loudly: it never passes by doing nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { History, openBank, verifyQuiesced, WORKLOAD_DDL } from '../fixtures/history.js'
import { call, MeshCluster, saveLogsOnFailure, waitFor } from '../fixtures/mesh-cluster.js'
import { NetLab } from '../fixtures/netlab.js'

const IDS = [0, 1, 2]
let net: NetLab | undefined
let c: MeshCluster | undefined

beforeAll(async () => {
  net = await NetLab.create(IDS.length)
  c = await MeshCluster.create(IDS.length, 'netns', {}, { net, durable: true })
  for (const i of IDS) await c.q(i, WORKLOAD_DDL)
  await Promise.all(IDS.map((i) => c?.start(i)))
  await openBank(c, IDS)
})

afterAll(async () => {
  await c?.destroy()
  await net?.destroy()
})

function nodeState(nodes: Array<{ node: number; state: string }>, id: number): string | undefined {
  return nodes.find((n) => n.node === id)?.state
}

describe('faults from outside: namespaces, partitions, PostgreSQL crashes', () => {
  saveLogsOnFailure(() => c, 'netns')
  const h = new History()
  let stop = false
  let writers: Promise<void>[] = []

  it('runs PostgreSQL with fsync on, each node in its own namespace', async () => {
    const cl = c as MeshCluster
    for (const i of IDS) {
      expect((await cl.q(i, 'SHOW fsync'))[0]?.fsync).toBe('on')
      // a peer is reached on its data link, not on loopback
      const subs = await cl.q(i, 'SELECT subconninfo FROM pg_subscription ORDER BY subname')
      for (const s of subs) expect(s.subconninfo).toMatch(/host=10\.213\./)
    }
    writers = IDS.map((i) => h.writer(cl, i, () => stop))
    await waitFor(() => IDS.every((i) => (h.stats.get(i)?.ok ?? 0) > 20), 20_000, 'writes on all')
  })

  it('a partition cuts the mesh and replication; both sides keep writing; healed, all converge', async () => {
    const cl = c as MeshCluster
    const lab = net as NetLab
    await lab.partition([[0, 1], [2]])
    const cut = Date.now()
    // the majority sees node 2 dead, node 2 sees both others dead: the mesh is really cut
    await waitFor(
      async () => {
        const a = (await call(cl.api(0), 'GET', '/v1/cluster/nodes')).json.nodes
        const b = (await call(cl.api(2), 'GET', '/v1/cluster/nodes')).json.nodes
        return (
          nodeState(a, 2) === 'dead' && nodeState(b, 0) === 'dead' && nodeState(b, 1) === 'dead'
        )
      },
      10_000,
      'each side sees the other dead',
    )
    const seenDeadMs = Date.now() - cut
    // a change cannot commit across the cut, and says which node is missing
    const r = await call(cl.api(0), 'DELETE', '/v1/cluster/replicaset/demo.events')
    expect(r.status).toBe(409)
    expect(r.json.message).toMatch(/node 2/)
    // replication is cut too: a row written on node 2 now does not reach node 0
    const before = h.stats.get(2)?.ok ?? 0
    await waitFor(() => (h.stats.get(2)?.ok ?? 0) > before + 50, 15_000, 'writes on node 2')
    const [mine] = await cl.q(2, 'SELECT max(seq) AS s FROM demo.events WHERE node = 2')
    await new Promise((res) => setTimeout(res, 1000))
    const [seen] = await cl.q(0, 'SELECT max(seq) AS s FROM demo.events WHERE node = 2')
    expect(Number(seen?.s)).toBeLessThan(Number(mine?.s))
    await lab.heal()
    await cl.waitMeshed(IDS, 30_000)
    console.info(`partition: each side saw the other dead after ${seenDeadMs} ms`)
  })

  it('a slow, lossy link on node 1 (throttled both ways): writes go on everywhere, nothing is lost', async () => {
    const cl = c as MeshCluster
    const lab = net as NetLab
    await lab.throttle(1, 96)
    try {
      // the fault lasts 5 s at least; every node keeps taking writes meanwhile, and the bucket
      // holds packets back and drops some (the link really is the bottleneck)
      const since = Date.now()
      const before = IDS.map((i) => h.stats.get(i)?.ok ?? 0)
      const t = await waitFor(
        async () => {
          const wrote = IDS.every((i, k) => (h.stats.get(i)?.ok ?? 0) > (before[k] ?? 0) + 100)
          const now = await lab.throttled(1)
          const held = Date.now() - since >= 5000
          return held && wrote && now.dropped > 0 && now.overlimits > 0 ? now : false
        },
        60_000,
        'writes on every node, and packets dropped on the slow link',
      )
      console.info(
        `throttle: node 1's link held back ${t.overlimits}, dropped ${t.dropped} packets`,
      )
    } finally {
      await lab.unthrottle(1)
    }
    await cl.waitMeshed(IDS, 30_000)
  })

  /** Crash node i's PostgreSQL under load: its writer must see the failure, then resume. */
  async function crashUnderLoad(i: number, how: 'kill' | 'immediate') {
    const cl = c as MeshCluster
    const s = h.stats.get(i)
    const failed = s?.failed ?? 0
    await cl.node(i).pg.crash(how)
    await waitFor(() => (s?.failed ?? 0) > failed, 10_000, `node ${i}'s writer sees the crash`)
    await cl.node(i).pg.start()
    const ok = s?.ok ?? 0
    await waitFor(() => (s?.ok ?? 0) > ok + 20, 20_000, `node ${i}'s writer back`)
  }

  it('node 1 PostgreSQL SIGKILLed under load: its writer fails, then resumes', async () => {
    await crashUnderLoad(1, 'kill')
  })

  it('node 2 PostgreSQL shut down immediately under load: the same', async () => {
    await crashUnderLoad(2, 'immediate')
  })

  // its own deadlines (60 s for the first table, 30 s for each next) exceed the suite's 60 s
  // test timeout: without this, a slow convergence ended as a bare timeout, not with the rows
  // that differ (CI on bb2de72)
  it('after quiesce: no acknowledged write lost, the total held, identical rows everywhere', async () => {
    const cl = c as MeshCluster
    stop = true
    await Promise.all(writers)
    // the history checker finds nothing, and the cluster's own check agrees
    const tables = ['demo.events', 'demo.accounts']
    await verifyQuiesced(cl, IDS, h, { tables, via: 1, minAcked: 300 })
    console.info(
      `history: ${h.acked.size} acknowledged, ${h.unknown.size} unknown; failed attempts ${IDS.map((i) => h.stats.get(i)?.failed).join('/')}`,
    )
  }, 150_000)

  it('the checker can fail: a write lost on one node is named', async () => {
    const cl = c as MeshCluster
    const [victim] = [...h.acked]
    const [node, seq] = (victim as string).split(':').map(Number)
    // delete it on node 1 only: under a replication origin, so it is not published, and
    // committed under it (its commit no member's: a lost row, not a member's DELETE)
    await cl.q(
      1,
      `SELECT pg_replication_origin_create('trktr_test_loss');
       SELECT pg_replication_origin_session_setup('trktr_test_loss');
       BEGIN; DELETE FROM demo.events WHERE node = ${node} AND seq = ${seq}; COMMIT;
       SELECT pg_replication_origin_session_reset()`,
    )
    const violations = await h.check(cl, IDS)
    expect(violations.join('\n')).toMatch(
      new RegExp(`node 1: 1 acknowledged writes lost, e\\.g\\. ${victim}`),
    )
    expect(violations.join('\n')).toMatch(/the nodes differ/)
    // and the repair puts it back everywhere
    const fix = await call(cl.api(0), 'POST', '/v1/cluster/check/demo.events/repair')
    expect(fix.json.after?.verdict, JSON.stringify(fix.json)).toBe('consistent')
    expect(await h.check(cl, IDS)).toEqual([])
  }, 150_000)
})
