// (3) Conflict healing time at the default checkIntervalMs (1000): an insert-insert conflict
// made the split-brain way on a meshed 3-node cluster. Nodes A = 0 and B = 1 stop
// subscribing to each other (DISABLE, and wait until their apply workers are gone), write the
// same key, and the clock starts as both subscriptions are enabled again. Each of A and B then
// fails to apply the other's row, PostgreSQL disables the subscription (disable_on_error), and
// the arbiter must notice, record, skip and re-enable. Healed = on both A and B a trktr.history
// row for it has `resolved` set and the subscription is enabled. (Node C received both rows at
// write time, so it meets its own conflict then; it is healed before the next run.) A random
// pause before each run puts the conflict at a random phase of the resolver's timer.
import { TraktorCluster } from './cluster.mjs'
import { figure, say, sleep, throwIfInterrupted, waitFor } from './util.mjs'

const A = 0
const B = 1
const SUB = { [A]: `trktr_sub_${A}_${B}`, [B]: `trktr_sub_${B}_${A}` }
const DEADLINE_MS = 20_000

const STATE = `
SELECT s.subenabled AS enabled,
       (SELECT count(*)::int FROM trktr.history h WHERE h.subscription = s.subname) AS recorded,
       (SELECT count(*)::int FROM trktr.history h
         WHERE h.subscription = s.subname AND h.resolved IS NOT NULL) AS resolved
FROM pg_subscription s WHERE s.subname = $1`

async function state(c, i) {
  return (await c.sql(i, STATE, [SUB[i]]))[0]
}

/** Follow one node from `start` until its conflict is healed; the times of each stage. */
async function follow(c, i, before, start) {
  const t = {}
  for (;;) {
    const s = await state(c, i)
    const now = performance.now() - start
    if (!s.enabled && t.disabled === undefined) t.disabled = now
    if (s.recorded > before.recorded && t.recorded === undefined) t.recorded = now
    if (t.disabled !== undefined && s.enabled && t.reenabled === undefined) t.reenabled = now
    if (s.resolved > before.resolved && s.enabled) {
      t.healed = now
      return t
    }
    if (now > DEADLINE_MS) throw new Error(`node ${i}: conflict not healed after ${DEADLINE_MS} ms`)
    await sleep(5)
  }
}

/** Every subscription on every node enabled and every history row resolved. */
async function quiet(c) {
  for (let i = 0; i < c.size; i++) {
    const [r] = await c.sql(
      i,
      `SELECT (SELECT count(*)::int FROM pg_subscription WHERE NOT subenabled) AS disabled,
              (SELECT count(*)::int FROM trktr.history WHERE resolved IS NULL) AS open`,
    )
    if (r.disabled > 0 || r.open > 0) return false
  }
  return true
}

export async function run(ctx) {
  const runs = ctx.quick ? 5 : 10
  say('conflict: starting 3 PostgreSQL servers and 3 arbiters')
  // TRAKTOR's skip resolver (the mesh default is lww, measured in suite lww)
  const c = await TraktorCluster.create(3, 'conf', { resolver: 'skip' })
  const healed = []
  const reenabled = []
  const detected = []
  try {
    await c.createTable('bench.c (id text PRIMARY KEY, v text)')
    await c.startAll()
    await c.addToReplicaset('bench.c')
    await ctx.quiet('conflict')
    const sampler = ctx.footprint('conflict healing (3)', c.arbiters[A].pid)
    for (let r = 0; r < runs; r++) {
      throwIfInterrupted()
      await waitFor(() => quiet(c), DEADLINE_MS, 'every node healed before the next conflict')
      const key = `split-${r}-${Date.now()}`
      await c.cutApart(A, B)
      await c.sql(A, `INSERT INTO bench.c VALUES ($1, 'written on A')`, [key])
      await c.sql(B, `INSERT INTO bench.c VALUES ($1, 'written on B')`, [key])
      const before = { [A]: await state(c, A), [B]: await state(c, B) }
      await sleep(Math.random() * 1000)
      const start = performance.now()
      await Promise.all([
        c.sql(A, `ALTER SUBSCRIPTION ${SUB[A]} ENABLE`),
        c.sql(B, `ALTER SUBSCRIPTION ${SUB[B]} ENABLE`),
      ])
      const [ta, tb] = await Promise.all([
        follow(c, A, before[A], start),
        follow(c, B, before[B], start),
      ])
      healed.push(Math.max(ta.healed, tb.healed))
      reenabled.push(Math.max(ta.reenabled ?? ta.healed, tb.reenabled ?? tb.healed))
      detected.push(Math.max(ta.recorded ?? ta.healed, tb.recorded ?? tb.healed))
      say(`conflict: run ${r + 1}/${runs}: healed in ${Math.round(healed.at(-1))} ms`)
    }
    sampler.end()
  } finally {
    await c.stop()
  }
  ctx.record(
    figure({
      name: 'conflict healed: history resolved + subscription enabled',
      unit: 'ms',
      samples: healed,
      target: { stat: 'p50', max: 1000 },
      note: 'split-brain insert-insert on nodes A and B, from ENABLE of both subscriptions until both have a resolved trktr.history row and are enabled; checkIntervalMs 1000 (default)',
    }),
  )
  ctx.record(
    figure({
      name: 'conflict: history row written (both nodes)',
      unit: 'ms',
      samples: detected,
      note: 'same clock, until both nodes have recorded the conflict (written just before the skip)',
    }),
  )
  ctx.record(
    figure({
      name: 'conflict: skipped and re-enabled (both nodes)',
      unit: 'ms',
      samples: reenabled,
      note: 'same clock, until both subscriptions are enabled again after PostgreSQL disabled them',
    }),
  )
}
