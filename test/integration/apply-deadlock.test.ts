// An apply worker and a local transaction that lock two rows in opposite orders deadlock; the
// local transaction is the one cancelled (src/postgres/apply-role.ts). With PostgreSQL's
// default the apply worker, which began to wait first, loses: its subscription is disabled
// until the resolver enables it again, and the peer's whole stream stands still meanwhile (the
// soak's hot rows: 65 of 88 such deadlocks per node). Two real arbiters on PostgreSQL 17.
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { APPLY_DEADLOCK_TIMEOUT_MS } from '../../src/postgres/apply-role.js'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1]

beforeAll(async () => {
  c = await MeshCluster.create(2, 'deadlock')
  for (const i of IDS)
    await c.q(
      i,
      'CREATE TABLE demo.d (id int PRIMARY KEY, v int NOT NULL); ALTER TABLE demo.d OWNER TO traktor_arbiter',
    )
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  const r = await call(c.api(0), 'PUT', '/v1/cluster/replicaset/demo.d')
  expect(r.status, JSON.stringify(r.json)).toBe(201)
  await c.q(0, 'INSERT INTO demo.d VALUES (1, 0), (2, 0)')
  await c.converged(IDS, 'demo.d')
})

afterAll(async () => {
  await c?.destroy()
})

const applyErrors = async (id: number) =>
  Number(
    (
      await c.q(
        id,
        `SELECT COALESCE(sum(apply_error_count), 0)::int AS n FROM pg_stat_subscription_stats`,
      )
    )[0]?.n,
  )

describe('a deadlock between an apply worker and a local transaction', () => {
  it('the arbiter role waits longer before checking for a deadlock in this database', async () => {
    const rows = await c.q(
      1,
      `SELECT c FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,
              unnest(s.setconfig) c
        WHERE d.datname = current_database() AND s.setrole = 'traktor_arbiter'::regrole
          AND c LIKE 'deadlock%'`,
    )
    expect(rows.map((r) => r.c)).toEqual([`deadlock_timeout=${APPLY_DEADLOCK_TIMEOUT_MS}ms`])
  })

  it('cancels the local transaction, and replication goes on', async () => {
    const errorsBefore = await applyErrors(1)
    const local: pg.Client = await c.client(1)
    try {
      // node 1: a local transaction holds row 2
      await local.query('BEGIN')
      await local.query('UPDATE demo.d SET v = v + 10 WHERE id = 2')
      // node 0 updates rows 1 then 2 in one transaction: node 1's apply worker locks row 1 and
      // waits for row 2
      const writer = await c.client(0)
      try {
        await writer.query(
          'BEGIN; UPDATE demo.d SET v = 1 WHERE id = 1; UPDATE demo.d SET v = 2 WHERE id = 2; COMMIT',
        )
      } finally {
        await writer.end()
      }
      await waitFor(
        async () =>
          (
            await c.q(
              1,
              `SELECT 1 FROM pg_stat_activity
                WHERE backend_type = 'logical replication apply worker' AND wait_event_type = 'Lock'`,
            )
          ).length > 0,
        10_000,
        "node 1's apply worker waiting for row 2",
      )
      // ...and the local transaction now wants row 1: a deadlock
      const outcome = await local.query('UPDATE demo.d SET v = v + 10 WHERE id = 1').then(
        () => 'the local update went through (the apply worker was cancelled)',
        (err: { code?: string }) => err.code,
      )
      expect(outcome).toBe('40P01')
    } finally {
      await local.query('ROLLBACK').catch(() => undefined)
      await local.end()
    }
    // node 0's transaction applied on node 1 with no apply error, and both nodes agree
    expect(await c.converged(IDS, 'demo.d')).toMatch(/^2 rows, /)
    expect((await c.q(1, 'SELECT v FROM demo.d ORDER BY id')).map((r) => r.v)).toEqual([1, 2])
    expect(await applyErrors(1)).toBe(errorsBefore)
    const subs = await c.q(1, 'SELECT bool_and(subenabled) AS on FROM pg_subscription')
    expect(subs[0]?.on).toBe(true)
  })
})
