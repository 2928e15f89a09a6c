// TEST-ONLY routes, registered only when the config says "testing": {"routes": true}: the
// fault suite cuts the mesh between arbiters (both sides call it) while PostgreSQL
// replication goes on. Never enable them in production.
import type { FastifyInstance } from 'fastify'
import { BadRequestError } from '../../errors.js'
import { doc } from '../openapi.js'
import { present } from '../present.js'
import { HealedBody, PartitionedBody, PartitionRequest } from '../shapes/index.js'

export interface PartitionSwitch {
  partition(peerIds: readonly string[]): Promise<void>
  heal(): void
}

/** Who is who in the mesh (the cluster's membership). */
export interface MemberList {
  membership: { members(): ReadonlyArray<{ nodeId: number; peerId: string }> }
}

const warning = 'TEST-ONLY: present only when the config enables testing routes'

export function testingRoutes(cluster: MemberList, mesh: PartitionSwitch) {
  return (app: FastifyInstance): void => {
    app.put(
      '/v1/testing/partition',
      {
        schema: doc({
          summary: 'Cut the mesh to these nodes (PostgreSQL replication goes on)',
          description: warning,
          tag: 'testing',
          body: PartitionRequest,
          answers: { 200: [PartitionedBody, 'cut'] },
          errors: [400],
        }),
      },
      async (req) => {
        const nodes = (req.body as { nodes?: unknown } | undefined)?.nodes
        if (!Array.isArray(nodes) || !nodes.every((n) => Number.isInteger(n))) {
          throw new BadRequestError('body: {"nodes": [node ids]}')
        }
        const peers = cluster.membership
          .members()
          .filter((m) => nodes.includes(m.nodeId))
          .map((m) => m.peerId)
        await mesh.partition(peers)
        return present.partitioned(nodes, peers)
      },
    )
    app.delete(
      '/v1/testing/partition',
      {
        schema: doc({
          summary: 'Heal every cut',
          description: warning,
          tag: 'testing',
          answers: { 200: [HealedBody, 'healed'] },
        }),
      },
      async () => {
        mesh.heal()
        return present.healed()
      },
    )
  }
}
