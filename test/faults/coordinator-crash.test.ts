// Fault 1: the coordinator arbiter is killed (SIGKILL) at each step of a replicaset proposal —
// after PREPARE is sent, after some ACKs, after the decision is recorded, after some COMMITs.
// After it restarts, the cluster converges to all-applied or none-applied, never half, and no
// proposal, fence trigger, slot or prepared transaction is left behind.
import fs from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CrashPoint } from '../../src/config/types.js'
import {
  call,
  MeshCluster,
  saveLogsOnFailure,
  TESTING_ENV,
  waitFor,
} from '../fixtures/mesh-cluster.js'

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

/** A table on every node, owned by the arbiter role; then node 0's arbiter restarted with `hook`. */
async function tableAndArmed(table: string, hook: Record<string, unknown>) {
  for (const i of IDS)
    await c.q(
      i,
      `CREATE TABLE demo.${table} (id int PRIMARY KEY); ALTER TABLE demo.${table} OWNER TO traktor_arbiter`,
    )
  await c.node(0).arbiter?.stop()
  return await c.start(0, { testing: hook }, TESTING_ENV)
}

/**
 * Nothing half-done on any node: no undecided proposal, no fence, no prepared transaction, no
 * decided COMMIT whose steps have not run everywhere, the same version everywhere. Throws
 * what is still open, so that a timeout names it.
 */
async function settled(): Promise<boolean> {
  const versions = new Map<number, number>()
  for (const i of IDS) {
    const [r] = await c.q(
      i,
      `SELECT (SELECT count(*)::int FROM trktr.proposals WHERE decision IS NULL) AS open,
              (SELECT count(*)::int FROM trktr.proposals
                WHERE decision = 'commit' AND NOT completed AND coordinator = $1) AS incomplete,
              (SELECT count(*)::int FROM pg_trigger WHERE tgname = 'trktr_fence') AS fences,
              (SELECT count(*)::int FROM pg_prepared_xacts) AS prepared,
              (SELECT replicaset_version FROM trktr.cluster) AS v`,
      [i],
    )
    if (r?.open !== 0 || r?.incomplete !== 0 || r?.fences !== 0 || r?.prepared !== 0)
      throw new Error(`node ${i} not settled: ${JSON.stringify(r)}`)
    versions.set(i, r.v as number)
  }
  if (new Set(versions.values()).size !== 1)
    throw new Error(`versions differ: ${JSON.stringify([...versions])}`)
  return true
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'crash')
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
})

saveLogsOnFailure(() => c, 'coordinator-crash')

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
    // node 0 coordinates with the crash hook armed
    const armed = await tableAndArmed(table, { crashAt: at })
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
    // and a later change commits normally, once every member sees node 0 again (node 0 is
    // everyone's bootstrap and has none itself: the others' redial back-off brings it back)
    await c.waitMeshed(IDS)
    const again = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
    expect([200, 201], JSON.stringify(again.json)).toContain(again.status)
    for (const i of IDS)
      expect(await published(i, table), `node ${i}: ${JSON.stringify(again.json)}`).toBe(true)
    if (want === 'all') {
      await c.q(2, `INSERT INTO demo.${table} VALUES (1)`)
      for (const i of IDS) {
        await waitFor(
          async () => (await c.q(i, `SELECT 1 FROM demo.${table}`)).length === 1,
          30_000, // a re-enabled subscription starts its worker late under load
          `row on node ${i}`,
        )
      }
      await c.converged(IDS, `demo.${table}`)
    }
  })
})

// The recovery paths the README promises, with the coordinator kept down: members resolve on
// their own after 10 s, or say "in doubt"; a fence is lowered after 15 s.
describe('coordinator down for good: members recover on their own', () => {
  async function armAndCrash(at: CrashPoint, table: string) {
    for (const i of IDS)
      await c.q(
        i,
        `CREATE TABLE demo.${table} (id int PRIMARY KEY, note text);
         ALTER TABLE demo.${table} OWNER TO traktor_arbiter`,
      )
    await c.node(0).arbiter?.stop()
    const armed = await c.start(0, { testing: { crashAt: at } }, TESTING_ENV)
    await c.waitMeshed(IDS)
    const r = await call(armed, 'PUT', `/v1/cluster/replicaset/demo.${table}`).catch(
      (err: Error) => ({ status: 0, json: err.message }),
    )
    expect(r.status, JSON.stringify(r.json)).toBe(0)
    await waitFor(
      () => armed.proc.exitCode !== null || armed.proc.signalCode !== null,
      10_000,
      'dead',
    )
    const crashed = Date.now()
    await armed.stop()
    return crashed
  }

  it('a true partial commit (one member published): the other commits from its peer, alone', async () => {
    const table = 't_partial'
    const caughtUp = (i: number) =>
      (
        c
          .api(i)
          .logs()
          .match(/adopted the cluster replicaset|in-doubt proposal committed from a peer/g) ?? []
      ).length
    const before = [1, 2].map(caughtUp)
    const crashed = await armAndCrash('one-publish', table)
    // with the coordinator still down, the member it did not reach commits from its peer
    await waitFor(
      async () => (await Promise.all([1, 2].map((i) => published(i, table)))).every(Boolean),
      30_000,
      'both members published without the coordinator',
    )
    const took = Date.now() - crashed
    // a member took it from a peer (the version gap closes within a second, or every peer is
    // asked after the in-doubt timeout): the coordinator was dead all along
    const learned = [1, 2].filter((i, k) => caughtUp(i) > (before[k] ?? 0))
    expect(learned.length, `${c.problems(1)}\n${c.problems(2)}`).toBeGreaterThanOrEqual(1)
    // the coordinator comes back and finishes its own part
    await c.start(0)
    await waitFor(settled, 30_000, 'settled after the coordinator returned')
    for (const i of IDS) expect(await published(i, table)).toBe(true)
    await c.q(0, `INSERT INTO demo.${table} VALUES (1, 'after')`)
    await c.converged(IDS, `demo.${table}`)
    expect((await c.q(2, `SELECT note FROM demo.${table}`))[0]?.note).toBe('after')
    console.info(`partial commit: the other member committed ${took} ms after the crash`)
  })

  it('everyone prepared, coordinator gone: in doubt, the fence lowered after 15 s, then committed', async () => {
    const table = 't_doubt'
    const crashed = await armAndCrash('decision', table)
    // a writer on node 1 waits behind the fence raised at PREPARE, at most 15 s
    const t0 = Date.now()
    await c.q(1, `INSERT INTO demo.${table} VALUES (7, 'waited')`)
    const waited = Date.now() - t0
    const fenceHeld = Date.now() - crashed
    expect(fenceHeld).toBeGreaterThan(10_000)
    expect(fenceHeld).toBeLessThan(20_000)
    expect(c.api(1).logs()).toMatch(/fence held too long \(coordinator gone\?\): lowering it/)
    // members ask everyone, find everyone prepared and the coordinator unreachable: in doubt
    for (const i of [1, 2]) {
      await waitFor(
        async () => {
          const m = await fetch(`${c.api(i).url}/metrics`).then((x) => x.text())
          return /^traktor_proposals_in_doubt 1$/m.test(m)
        },
        40_000,
        `node ${i} reports the proposal in doubt`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${c.problems(i)}`)
      })
      expect(c.api(i).logs()).toMatch(/proposal in doubt: coordinator unreachable/)
    }
    for (const i of IDS) expect(await published(i, table)).toBe(false)
    // the coordinator returns: it recorded COMMIT before dying, so the change commits everywhere
    await c.start(0)
    await waitFor(settled, 30_000, 'settled after the coordinator returned')
    for (const i of IDS) expect(await published(i, table)).toBe(true)
    // the row written while nothing was fenced or published stayed on node 1: the cluster says
    // so by itself within seconds (a change re-driven is checked), a check names the row, and a
    // repair brings it everywhere
    await c.differenceShown(2, `demo.${table}`)
    const check = await call(c.api(2), 'GET', `/v1/cluster/check/demo.${table}`)
    expect(check.json.tables[0].verdict, JSON.stringify(check.json)).toBe('differs')
    expect(check.json.tables[0].keys.map((k: { key: { id: number } }) => k.key.id)).toEqual([7])
    const fix = await call(c.api(0), 'POST', `/v1/cluster/check/demo.${table}/repair`)
    expect(fix.json.after?.verdict, JSON.stringify(fix.json)).toBe('consistent')
    await c.converged(IDS, `demo.${table}`)
    console.info(`in doubt: the writer waited ${waited} ms behind the fence`)
  })
})

// The same for a schema change (POST /v1/cluster/ddl): killed after the drain (nothing
// prepared), after every node prepared its statement (undecided), after the decision, after
// every node committed, after exactly one member committed. After the restart every node has
// the new column or none has, no prepared transaction or fence is left, and replication flows.
describe('coordinator killed mid-schema-change', () => {
  const ddlCases: Array<{ at: CrashPoint; expect: 'none' | 'all' }> = [
    { at: 'ddl-drained', expect: 'none' },
    { at: 'ddl-prepared', expect: 'none' },
    { at: 'decision', expect: 'all' },
    { at: 'some-commits', expect: 'all' },
    { at: 'one-publish', expect: 'all' },
  ]
  const hasColumn = async (id: number, table: string) =>
    (
      await c.q(
        id,
        `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'extra' AND NOT attisdropped`,
        [`demo.${table}`],
      )
    ).length === 1

  it.each(ddlCases)(
    'killed at $at → $expect changed after restart',
    async ({ at, expect: want }) => {
      const table = `d_${at.replace('-', '_')}`
      for (const i of IDS)
        await c.q(
          i,
          `CREATE TABLE demo.${table} (id int PRIMARY KEY, note text); ALTER TABLE demo.${table} OWNER TO traktor_arbiter`,
        )
      await c.waitMeshed(IDS) // node 0 restarted by the case before
      const add = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
      expect(add.status, JSON.stringify(add.json)).toBe(201)
      await c.node(0).arbiter?.stop()
      const armed = await c.start(0, { testing: { crashAt: at } }, TESTING_ENV)
      await c.waitMeshed(IDS)
      const r = await call(armed, 'POST', '/v1/cluster/ddl', {
        sql: `ALTER TABLE demo.${table} ADD COLUMN extra int`,
      }).catch((err: Error) => ({ status: 0, json: err.message }))
      expect(r.status, JSON.stringify(r.json)).toBe(0) // the coordinator died mid-call
      await waitFor(
        () => armed.proc.exitCode !== null || armed.proc.signalCode !== null,
        10_000,
        'coordinator dead',
      )
      await armed.stop()
      await c.start(0)
      await waitFor(settled, 40_000, `cluster settled after a crash at ${at}`).catch(
        (err: Error) => {
          throw new Error(`${err.message}\n${IDS.map((i) => c.problems(i)).join('\n')}`)
        },
      )
      const changed = await Promise.all(IDS.map((i) => hasColumn(i, table)))
      expect(changed).toEqual(IDS.map(() => want === 'all'))
      // writes flow on every node afterwards
      await c.q(2, `INSERT INTO demo.${table} (id, note) VALUES (1, 'after')`)
      for (const i of IDS)
        await waitFor(
          async () => (await c.q(i, `SELECT 1 FROM demo.${table}`)).length === 1,
          10_000,
          `row on node ${i}`,
        )
      await c.converged(IDS, `demo.${table}`)
    },
  )
})

/** A process's state letter from /proc (`T`: stopped by a signal). */
function procState(pid: number | undefined): string | undefined {
  if (pid === undefined) return undefined
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]
  } catch {
    return undefined
  }
}

// Jepsen's process pause: the coordinator stopped (SIGSTOP) at a step of a proposal, long enough
// for the members to act without it (they see it dead, ask each other after 10 s, lower their
// fences after 15 s), then resumed (SIGCONT) with every timer and socket as it left them. It
// finishes the call, and its answer tells the truth: 201 → the table is published on every node,
// 409 → on none; nothing half-done is left anywhere.
describe('coordinator frozen mid-proposal (SIGSTOP), then resumed', () => {
  const points: CrashPoint[] = ['prepare-sent', 'some-acks', 'decision', 'some-commits']
  it.each(points)(
    'frozen at %s until the members act alone: its answer matches every node',
    async (at) => {
      const table = `f_${at.replace('-', '_')}`
      const armed = await tableAndArmed(table, { freezeAt: at })
      try {
        await c.waitMeshed(IDS)
        const marks = [1, 2].map((i) => c.api(i).logs().length)
        const answer = call(armed, 'PUT', `/v1/cluster/replicaset/demo.${table}`).catch(
          (err: Error) => ({ status: 0, json: err.message }),
        )
        await waitFor(() => procState(armed.proc.pid) === 'T', 10_000, 'coordinator frozen')
        const frozen = Date.now()
        // a member acts without the coordinator: reports it in doubt, takes the commit from a
        // peer, or lowers its fence (at 15 s at the latest)
        const acted = /proposal in doubt|in-doubt proposal (committed|aborted)|fence held too long/
        await waitFor(
          () => [1, 2].some((i, k) => acted.test(c.api(i).logs().slice(marks[k]))),
          30_000,
          'a member acting without the coordinator',
        )
        const held = Date.now() - frozen
        armed.proc.kill('SIGCONT')
        const r = await answer
        await waitFor(settled, 40_000, `settled after a freeze at ${at}`).catch((err: Error) => {
          throw new Error(`${err.message}\n${IDS.map((i) => c.problems(i)).join('\n')}`)
        })
        const applied = await Promise.all(IDS.map((i) => published(i, table)))
        expect([200, 201, 409], JSON.stringify(r.json)).toContain(r.status)
        expect(applied, JSON.stringify(r.json)).toEqual(IDS.map(() => r.status !== 409))
        console.info(`frozen at ${at} for ${held} ms: answered ${r.status}`)
      } finally {
        armed.proc.kill('SIGCONT')
        await armed.stop()
        await c.start(0)
      }
      // the cluster takes the next change, and the rows flow
      await c.waitMeshed(IDS)
      const again = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
      expect([200, 201], JSON.stringify(again.json)).toContain(again.status)
      await c.q(2, `INSERT INTO demo.${table} VALUES (1)`)
      for (const i of IDS)
        await waitFor(
          async () => (await c.q(i, `SELECT 1 FROM demo.${table}`)).length === 1,
          30_000,
          `row on node ${i}`,
        )
      await c.converged(IDS, `demo.${table}`)
    },
    120_000,
  )

  it('frozen past the fence limit: a row written on a member meanwhile shows in health once the change commits, and a repair brings it everywhere', async () => {
    const table = 'f_late'
    const armed = await tableAndArmed(table, { freezeAt: 'decision' })
    try {
      await c.waitMeshed(IDS)
      const mark = c.api(1).logs().length
      const answer = call(armed, 'PUT', `/v1/cluster/replicaset/demo.${table}`).catch(
        (err: Error) => ({ status: 0, json: err.message }),
      )
      await waitFor(() => procState(armed.proc.pid) === 'T', 10_000, 'coordinator frozen')
      await waitFor(
        () => /fence held too long/.test(c.api(1).logs().slice(mark)),
        30_000,
        "node 1's fence lowered by its time limit",
      )
      // not published anywhere yet: this row stays on node 1
      await c.q(1, `INSERT INTO demo.${table} VALUES (7)`)
      armed.proc.kill('SIGCONT')
      const r = await answer
      expect(r.status, JSON.stringify(r.json)).toBe(201)
      await waitFor(settled, 40_000, 'settled after the freeze')
    } finally {
      armed.proc.kill('SIGCONT')
      await armed.stop()
      await c.start(0)
    }
    await c.waitMeshed(IDS)
    // the cluster says so by itself within seconds (node 1 checks the table it let writers in)
    await c.differenceShown(2, `demo.${table}`)
    const md5 = await c.repaired(1, IDS, `demo.${table}`)
    expect(md5).toMatch(/^1 rows/)
  }, 120_000)
})
