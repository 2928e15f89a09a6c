// TEST-ONLY routes, registered only when the config says "testing": {"routes": true}: the
// fault suite cuts the mesh between arbiters (both sides call it) while PostgreSQL
// replication goes on. Never enable them in production.
import type { FastifyInstance } from 'fastify'
import type { Cluster } from '../../cluster/cluster.js'
import { BadRequestError } from '../../errors.js'

export interface PartitionSwitch {
  partition(peerIds: readonly string[]): Promise<void>
  heal(): void
}

export function testingRoutes(cluster: Cluster, mesh: PartitionSwitch) {
  return (app: FastifyInstance): void => {
    app.put('/v1/testing/partition', async (req) => {
      const nodes = (req.body as { nodes?: unknown } | undefined)?.nodes
      if (!Array.isArray(nodes) || !nodes.every((n) => Number.isInteger(n))) {
        throw new BadRequestError('body: {"nodes": [node ids]}')
      }
      const peers = cluster.membership
        .members()
        .filter((m) => nodes.includes(m.nodeId))
        .map((m) => m.peerId)
      await mesh.partition(peers)
      return { partitioned: nodes, peers }
    })
    app.delete('/v1/testing/partition', async () => {
      mesh.heal()
      return { healed: true }
    })
  }
}
