// The lww loop is woken by the queue itself: the first key an apply worker queues notifies the
// arbiter (LISTEN), so a conflict is resolved at once, not at the loop's next tick. Shown with
// the fallback tick set to an hour (testing.lwwTickMs): an update-update conflict is resolved
// within seconds; with the queue's notify trigger disabled the same conflict is still queued
// seconds later (so this test can fail), and is resolved when the arbiters start again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nextBeat } from '../../src/beat.js'
import { call, MeshCluster, TESTING_ENV, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1]
// the loop's timer runs on the beat: at the whole hours on the clock (src/beat.ts)
const TICK_MS = 3_600_000
const SLOW_TICK = { testing: { lwwTickMs: TICK_MS } }

const queued = async (id: number) =>
  Number((await c.q(id, 'SELECT count(*)::int AS n FROM trktr.conflict_queue'))[0]?.n)

/** Node 0 and node 1 update row `id` while cut apart, then are joined again. */
async function conflict(id: number): Promise<void> {
  await c.cut(MeshCluster.pairs(IDS))
  // one after the other on one clock: node 1's commit is the later one
  await c.q(0, `UPDATE demo.w SET v = 'zero' WHERE id = $1`, [id])
  await c.q(1, `UPDATE demo.w SET v = 'one' WHERE id = $1`, [id])
  await c.heal(MeshCluster.pairs(IDS))
}

beforeAll(async () => {
  c = await MeshCluster.create(2, 'wake')
  for (const i of IDS)
    await c.q(
      i,
      'CREATE TABLE demo.w (id int PRIMARY KEY, v text); ALTER TABLE demo.w OWNER TO traktor_arbiter',
    )
  await Promise.all(IDS.map((i) => c.start(i, SLOW_TICK, TESTING_ENV)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.w')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
  await c.q(0, `INSERT INTO demo.w SELECT g, 'seed' FROM generate_series(1, 10) g`)
  await c.converged(IDS, 'demo.w')
})

afterAll(async () => {
  await c?.destroy()
})

describe('the lww loop is woken by a queued key', () => {
  it('an update-update conflict is resolved within seconds, with a tick of an hour', async () => {
    await conflict(1)
    // unresolved, each node would hold the other's version (each applied it over its own and
    // queued its own): both hold the later writer's only once node 0's version is restored
    const value = async (i: number) => (await c.q(i, 'SELECT v FROM demo.w WHERE id = 1'))[0]?.v
    await waitFor(
      async () =>
        (await value(0)) === 'one' &&
        (await value(1)) === 'one' &&
        (await queued(0)) === 0 &&
        (await queued(1)) === 0,
      5000,
      'the later writer on both nodes, nothing queued',
    ).catch(async (err: Error) => {
      const state = await Promise.all(
        IDS.map(async (i) => ({
          node: i,
          v: await value(i),
          queued: await queued(i),
          resolutions: await c.q(
            i,
            'SELECT kind, action, winner_node, loser_node FROM trktr.resolutions',
          ),
        })),
      )
      throw new Error(`${err.message}: ${JSON.stringify(state)}`)
    })
    expect(await c.converged(IDS, 'demo.w')).toMatch(/^10 rows, /) // every seeded row, same md5
  })

  it('with the notify trigger disabled the key stays queued until the arbiters start again', async () => {
    for (const i of IDS)
      await c.q(i, 'ALTER TABLE trktr.conflict_queue DISABLE TRIGGER trktr_queued')
    await conflict(2)
    // the key reached the queue, and nothing woke the loop
    await waitFor(async () => (await queued(0)) + (await queued(1)) > 0, 10_000, 'a key queued')
    // and it stays queued for 3 s (every poll), where the notified loop took milliseconds; the
    // window ends before the next whole hour, when the timer would run a cycle (with a minute's
    // tick a CI run once saw it fall inside the window)
    const until = Math.min(Date.now() + 3000, nextBeat(Date.now(), TICK_MS, true) - 500)
    while (Date.now() < until) {
      expect((await queued(0)) + (await queued(1)), 'still queued').toBeGreaterThan(0)
      await new Promise((r) => setTimeout(r, 100))
    }
    for (const i of IDS)
      await c.q(i, 'ALTER TABLE trktr.conflict_queue ENABLE ALWAYS TRIGGER trktr_queued')
    // a start runs one cycle at once: the queue is resolved, the table identical
    for (const i of IDS) {
      await c.node(i).arbiter?.stop()
      await c.start(i, SLOW_TICK, TESTING_ENV)
    }
    await waitFor(
      async () => (await queued(0)) === 0 && (await queued(1)) === 0,
      30_000,
      'queue empty after the restart',
    )
    expect(await c.converged(IDS, 'demo.w')).toMatch(/^10 rows, /)
    const [row] = await c.q(0, 'SELECT v FROM demo.w WHERE id = 2')
    expect(row?.v).toBe('one')
  })
})
