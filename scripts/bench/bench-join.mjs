// (2) Join time, N = 3 → 4: a meshed 3-node cluster with one table in its replicaset and a
// fourth PostgreSQL server already prepared (database, role, the table). The clock starts when
// the fourth arbiter process is spawned and stops when every subscription both ways is
// enabled (trktr_sub_3_{0,1,2} on the new node, trktr_sub_{0,1,2}_3 on the others). Also
// recorded: the process answering /healthz, and every one of the six apply workers running.
// A fresh cluster per run, so every run is the same 3 → 4.
import { TraktorCluster } from './cluster.mjs'
import { figure, say, sleep, throwIfInterrupted } from './util.mjs'

const TABLE = 'bench.j (id text PRIMARY KEY, v text)'
const DEADLINE_MS = 60_000

async function enabledBothWays(c, ids, joiner) {
  const rows = await Promise.all(
    ids.map((i) =>
      c.sql(
        i,
        `SELECT s.subname, s.subenabled,
                (SELECT w.pid FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL
                  LIMIT 1) AS pid
         FROM pg_subscription s WHERE s.subname LIKE 'trktr\\_sub\\_%'`,
      ),
    ),
  )
  const want = ids.flatMap((i) =>
    i === joiner
      ? ids.filter((o) => o !== i).map((o) => `trktr_sub_${i}_${o}`)
      : [`trktr_sub_${i}_${joiner}`],
  )
  const all = rows.flat()
  const found = want.map((w) => all.find((r) => r.subname === w))
  return {
    enabled: found.every((r) => r?.subenabled === true),
    running: found.every((r) => r?.subenabled === true && r.pid !== null),
  }
}

async function once(ctx, run) {
  const c = await TraktorCluster.create(3, `join${run}_`)
  try {
    await c.createTable(TABLE)
    await c.startAll([0, 1, 2])
    await c.addToReplicaset('bench.j')
    const joiner = await c.addServer()
    await c.createTable(TABLE, [joiner])
    await sleep(1000)
    await ctx.quiet(`join run ${run + 1}`)
    throwIfInterrupted()
    const ids = [0, 1, 2, joiner]
    const sampler = run === 0 ? ctx.footprint('join 3 → 4 (2)', c.arbiters[0].pid) : null
    const start = performance.now()
    await c.startArbiter(joiner, { wait: false })
    let enabled
    let running
    const healthy = c.waitHealthy(joiner, DEADLINE_MS).then(
      () => performance.now() - start,
      (err) => err,
    )
    for (;;) {
      const s = await enabledBothWays(c, ids, joiner)
      const t = performance.now() - start
      if (s.enabled && enabled === undefined) enabled = t
      if (s.running && running === undefined) running = t
      if (enabled !== undefined && running !== undefined) break
      if (t > DEADLINE_MS) throw new Error(`node ${joiner} not joined after ${DEADLINE_MS} ms`)
      await sleep(10)
    }
    sampler?.end()
    const h = await healthy
    if (h instanceof Error) throw h
    return { enabled, running, healthy: h }
  } finally {
    await c.stop()
  }
}

export async function run(ctx) {
  const runs = ctx.quick ? 3 : 5
  const enabled = []
  const running = []
  const healthy = []
  for (let r = 0; r < runs; r++) {
    say(`join: run ${r + 1}/${runs}`)
    const s = await once(ctx, r)
    enabled.push(s.enabled)
    running.push(s.running)
    healthy.push(s.healthy)
  }
  ctx.record(
    figure({
      name: 'join 3 → 4: every subscription both ways enabled',
      unit: 'ms',
      samples: enabled,
      note: 'from spawning the 4th arbiter process (its PostgreSQL already running) until the 6 new subscriptions are enabled',
    }),
  )
  ctx.record(
    figure({
      name: 'join 3 → 4: every apply worker running',
      unit: 'ms',
      samples: running,
      note: 'same clock, until pg_stat_subscription shows an apply worker for each of the 6',
    }),
  )
  ctx.record(
    figure({
      name: 'join 3 → 4: arbiter process answers /healthz',
      unit: 'ms',
      samples: healthy,
      note: 'Node start, module loading, PostgreSQL pool, mesh start, HTTP listen',
    }),
  )
}
