// (10) Synchronous mode (issue 15), on a meshed 3-node cluster with arbiters at their default
// timings (deadAfterMs 2000), the database default synchronous_commit = remote_apply (README):
//
// - commit latency: one client on node 0 inserts one row per transaction, sync against async in
//   the same run, repetitions interleaved (the cluster switched between them with one
//   PUT /v1/cluster/commit); the figure is the ratio of the medians per repetition.
// - throughput: four clients on node 0 for a few seconds each way, same interleaving; ratio.
// - the stall when a peer dies: in sync mode a writer on node 0 commits without pause while
//   node 2's PostgreSQL is SIGKILLed; the longest commit is the stall (target deadAfterMs + 1 s:
//   the arbiter takes the peer out of synchronous_standby_names when it stops streaming or its
//   arbiter is seen dead). Node 2 is restarted and taken back in before the next repetition.
import { connect, TraktorCluster } from './cluster.mjs'
import { figure, percentile, round, say, throwIfInterrupted, waitFor } from './util.mjs'

const DEAD_AFTER_MS = 2000
const CLIENTS = 4

async function setMode(c, mode) {
  const r = await c.api(0, 'PUT', '/v1/cluster/commit', { mode })
  if (r.status !== 200) throw new Error(`commit ${mode}: ${r.status} ${JSON.stringify(r.json)}`)
  const want = (i) =>
    mode === 'async'
      ? ''
      : `ANY 2 (${[0, 1, 2]
          .filter((p) => p !== i)
          .map((p) => `"trktr_sub_${p}_${i}"`)
          .join(', ')})`
  await waitFor(
    async () => {
      for (let i = 0; i < c.size; i++) {
        const [s] = await c.sql(i, `SELECT current_setting('synchronous_standby_names') AS v`)
        if (s?.v !== want(i)) return false
      }
      return true
    },
    30_000,
    `every node ${mode}`,
  )
}

async function client(c, i) {
  const cl = await connect(c.servers[i])
  await cl.query('SET synchronous_commit = remote_apply')
  return cl
}

let nextId = 1

/** Sequential single-row commits on node 0: each one's latency (ms). */
async function latencies(cl, n) {
  const out = []
  for (let k = 0; k < n; k++) {
    const t0 = performance.now()
    await cl.query('INSERT INTO bench.s VALUES ($1, $2)', [nextId++, 'latency'])
    out.push(performance.now() - t0)
  }
  return out
}

/** CLIENTS clients committing without pause for `ms`: transactions per second. */
async function throughput(clients, ms) {
  let done = 0
  const end = performance.now() + ms
  await Promise.all(
    clients.map(async (cl) => {
      while (performance.now() < end) {
        await cl.query('INSERT INTO bench.s VALUES ($1, $2)', [nextId++, 'throughput'])
        done++
      }
    }),
  )
  return (done * 1000) / ms
}

async function stall(c, writer) {
  let stop = false
  const lat = []
  const loop = (async () => {
    while (!stop) {
      const t0 = performance.now()
      await writer.query('INSERT INTO bench.s VALUES ($1, $2)', [nextId++, 'stall'])
      lat.push(performance.now() - t0)
    }
  })()
  await waitFor(() => lat.length > 50, 10_000, 'writes before the kill')
  await c.servers[2].crash('kill')
  const killedAt = lat.length
  try {
    await waitFor(() => lat.length > killedAt + 100, 20_000, 'writes without node 2')
  } finally {
    stop = true
    await loop
  }
  await c.servers[2].start()
  c.clients[2] = await connect(c.servers[2])
  await setMode(c, 'sync') // every node's set whole again (node 2 caught up)
  return Math.max(...lat)
}

export async function run(ctx) {
  const reps = ctx.quick ? 3 : 6
  const n = ctx.quick ? 100 : 300
  say('sync: starting 3 PostgreSQL servers and 3 arbiters')
  const c = await TraktorCluster.create(3, 'sync')
  const ratios = { lat: [], tps: [] }
  const medians = { sync: [], async: [], syncTps: [], asyncTps: [] }
  const stalls = []
  const clients = []
  try {
    await c.createTable('bench.s (id int PRIMARY KEY, v text NOT NULL)')
    await c.startAll()
    await c.addToReplicaset('bench.s')
    for (let k = 0; k < CLIENTS; k++) clients.push(await client(c, 0))
    await ctx.quiet('sync')
    for (let r = 0; r < reps; r++) {
      throwIfInterrupted()
      const got = {}
      for (const mode of r % 2 === 0 ? ['async', 'sync'] : ['sync', 'async']) {
        await setMode(c, mode)
        got[mode] = percentile(await latencies(clients[0], n), 50)
        got[`${mode}Tps`] = await throughput(clients, ctx.quick ? 1500 : 3000)
      }
      for (const k of Object.keys(medians)) medians[k].push(got[k])
      ratios.lat.push(got.sync / got.async)
      ratios.tps.push(got.syncTps / got.asyncTps)
      say(
        `sync: rep ${r + 1}/${reps}: commit p50 sync ${round(got.sync, 2)} ms / async ${round(got.async, 2)} ms; ${Math.round(got.syncTps)} / ${Math.round(got.asyncTps)} tx/s`,
      )
    }
    await setMode(c, 'sync')
    for (let r = 0; r < (ctx.quick ? 2 : 3); r++) {
      throwIfInterrupted()
      stalls.push(await stall(c, clients[0]))
      say(`sync: peer killed, worst commit ${Math.round(stalls.at(-1))} ms`)
    }
  } finally {
    await Promise.all(clients.map((cl) => cl.end().catch(() => undefined)))
    await c.stop()
  }
  const med = (xs) => round(percentile(xs, 50), 2)
  const note = `3 nodes, remote_apply, one client on node 0 (${n} single-row commits per mode and repetition, modes interleaved, switched with PUT /v1/cluster/commit); sync medians ${med(medians.sync)} ms, async ${med(medians.async)} ms`
  ctx.record(
    figure({
      name: 'sync: commit latency ratio sync / async',
      unit: 'ratio',
      samples: ratios.lat,
      digits: 2,
      target: { stat: 'p50', max: 3 },
      note,
    }),
  )
  ctx.record(
    figure({
      name: 'sync: throughput ratio sync / async',
      unit: 'ratio',
      samples: ratios.tps,
      digits: 2,
      target: { stat: 'p50', min: 0.5 },
      note: `${CLIENTS} clients on node 0; sync ${Math.round(percentile(medians.syncTps, 50))} tx/s, async ${Math.round(percentile(medians.asyncTps, 50))} tx/s`,
    }),
  )
  ctx.record(
    figure({
      name: 'sync: longest commit while a peer dies',
      unit: 'ms',
      samples: stalls,
      target: { stat: 'p95', max: DEAD_AFTER_MS + 1000 },
      note: `a writer on node 0 without pause; node 2's postmaster SIGKILLed (deadAfterMs ${DEAD_AFTER_MS}, default)`,
    }),
  )
}
