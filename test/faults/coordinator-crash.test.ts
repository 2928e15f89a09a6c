// Fault 1: the coordinator arbiter is killed (SIGKILL) at each step of a replicaset proposal —
// after PREPARE is sent, after some ACKs, after the decision is recorded, after some COMMITs.
// After it restarts, the cluster converges to all-applied or none-applied, never half, and no
// proposal, fence trigger, slot or prepared transaction is left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CrashPoint } from '../../src/config/types.js'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]

async function published(id: number, table: string): Promise<boolean> {
  const rows = await c.q(
    id,
    `SELECT 1 FROM pg_publication_tables WHERE pubname = 'trktr_pub' AND schemaname = 'demo' AND tablename = $1`,
    [table],
  )
  return rows.length === 1
}

/** Nothing half-done on any node: no undecided proposal, no fence, same version everywhere. */
async function settled(): Promise<boolean> {
  const versions = new Set<number>()
  for (const i of IDS) {
    const open = await c.q(
      i,
      `SELECT count(*)::int AS n FROM trktr.proposals WHERE decision IS NULL`,
    )
    const fences = await c.q(
      i,
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'trktr_fence'`,
    )
    const prepared = await c.q(i, `SELECT count(*)::int AS n FROM pg_prepared_xacts`)
    if (open[0]?.n !== 0 || fences[0]?.n !== 0 || prepared[0]?.n !== 0) return false
    const [v] = await c.q(i, `SELECT replicaset_version AS v FROM trktr.cluster`)
    versions.add(v?.v as number)
  }
  return versions.size === 1
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'crash')
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
})

afterAll(async () => {
  await c?.destroy()
})

const cases: Array<{ at: CrashPoint; expect: 'none' | 'all' }> = [
  { at: 'prepare-sent', expect: 'none' },
  { at: 'some-acks', expect: 'none' },
  { at: 'decision', expect: 'all' },
  { at: 'some-commits', expect: 'all' },
]

describe('coordinator killed mid-proposal', () => {
  it.each(cases)('killed at $at → $expect applied after restart', async ({ at, expect: want }) => {
    const table = `t_${at.replace('-', '_')}`
    for (const i of IDS)
      await c.q(
        i,
        `CREATE TABLE demo.${table} (id int PRIMARY KEY); ALTER TABLE demo.${table} OWNER TO traktor_arbiter`,
      )
    // node 0 coordinates with the crash hook armed
    await c.node(0).arbiter?.stop()
    const armed = await c.start(0, { testing: { crashAt: at } })
    await c.waitMeshed(IDS)
    const r = await call(armed, 'PUT', `/v1/cluster/replicaset/demo.${table}`).catch(
      (err: Error) => ({ status: 0, json: err.message }),
    )
    expect(r.status, JSON.stringify(r.json)).toBe(0) // the coordinator died mid-call
    await waitFor(
      () => armed.proc.exitCode !== null || armed.proc.signalCode !== null,
      10_000,
      'coordinator dead',
    )
    await armed.stop()
    // restart without the hook: recovery finishes or undoes the change
    await c.start(0)
    await waitFor(settled, 30_000, `cluster settled after a crash at ${at}`)
    const applied = await Promise.all(IDS.map((i) => published(i, table)))
    expect(applied).toEqual(IDS.map(() => want === 'all'))
    // and a later change commits normally
    const again = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
    expect([200, 201]).toContain(again.status)
    for (const i of IDS) expect(await published(i, table)).toBe(true)
    if (want === 'all') {
      await c.q(2, `INSERT INTO demo.${table} VALUES (1)`)
      for (const i of IDS) {
        await waitFor(
          async () => (await c.q(i, `SELECT 1 FROM demo.${table}`)).length === 1,
          10_000,
          `row on node ${i}`,
        )
      }
    }
  })
})
