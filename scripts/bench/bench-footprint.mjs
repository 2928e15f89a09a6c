// (6) Footprint alone (`--only footprint` without latency): an idle meshed 3-node cluster.
// The figures during (1)-(4) are sampled by those benchmarks themselves.
import { TraktorCluster } from './cluster.mjs'

export async function run(ctx) {
  const c = await TraktorCluster.create(3, 'foot')
  try {
    await c.startAll()
    ctx.pgVersion ??= (await c.sql(0, 'SHOW server_version'))[0].server_version
    await ctx.idleFootprint(c)
  } finally {
    await c.stop()
  }
}
