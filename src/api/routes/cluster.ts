// /v1/cluster/*: the whole cluster from any node (mesh mode). In standalone mode every route
// answers 409 ERR_NOT_MESH, so a script learns why instead of meeting a 404.
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Cluster } from '../../cluster/cluster.js'
import type { Outcome } from '../../cluster/proposals.js'
import { BadRequestError, ConflictError } from '../../errors.js'
import type { ReplicasetSnapshot } from '../../postgres/cluster-state.js'
import type { HistoryEntry } from '../../postgres/history.js'
import { parseRelationName } from '../../postgres/ident.js'
import { resolutionRow } from './arbiter.js'

export function notMesh(): ConflictError {
  return new ConflictError('this arbiter runs standalone (no "mesh" in its config)', 'ERR_NOT_MESH')
}

export function outcomeStatus(o: Outcome): number {
  if (o.outcome === 'aborted') return 409
  return o.outcome === 'committed' && o.op === 'add' ? 201 : 200
}

export function outcomeBody(o: Outcome): Record<string, unknown> {
  return {
    outcome: o.outcome,
    op: o.op,
    relation: o.relation,
    version: o.version,
    ...(o.proposalId ? { proposal: o.proposalId } : {}),
    ...(o.reason ? { reason: o.reason } : {}),
    nodes: o.nodes,
    duration_ms: o.durationMs,
  }
}

export function clusterRoutes(cluster: Cluster | undefined, nodeId: number) {
  return (app: FastifyInstance): void => {
    const need = (): Cluster => {
      if (!cluster) throw notMesh()
      return cluster
    }
    const propose = async (op: 'add' | 'remove', relation: string, reply: FastifyReply) => {
      const c = need()
      const o = await c.propose(op, parseRelationName(relation))
      const body = outcomeBody(o)
      if (o.outcome === 'aborted') {
        await reply.code(409).send({ error: 'ERR_ABORTED', message: abortMessage(o), ...body })
        return
      }
      await reply.code(outcomeStatus(o)).send(body)
    }

    app.get('/v1/cluster/status', async () => await need().status())
    app.get('/v1/cluster/nodes', async () => ({ node: nodeId, nodes: need().nodes() }))
    app.delete<{ Params: { id: string } }>('/v1/cluster/nodes/:id', async (req) => {
      const c = need()
      if (!/^\d{1,10}$/.test(req.params.id))
        throw new BadRequestError('node id must be an integer >= 0')
      const id = Number(req.params.id)
      if (id === nodeId) throw new BadRequestError('a node cannot remove itself; ask another node')
      return await c.removeNode(id)
    })
    app.get('/v1/cluster/replicaset', async () => replicasetBody(await need().replicaset(), nodeId))
    app.put<{ Params: { relation: string } }>(
      '/v1/cluster/replicaset/:relation',
      async (req, reply) => {
        await propose('add', req.params.relation, reply)
      },
    )
    app.delete<{ Params: { relation: string } }>(
      '/v1/cluster/replicaset/:relation',
      async (req, reply) => {
        await propose('remove', req.params.relation, reply)
      },
    )
    app.get('/v1/cluster/history', async () => ({
      node: nodeId,
      resolutions: (await need().history()).map(historyRow),
    }))
  }
}

/** One resolution as both /v1/cluster/history and history.list answer it. */
export function historyRow(h: HistoryEntry & { node: number }): Record<string, unknown> {
  return { node: h.node, ...resolutionRow(h) }
}

/** The replicaset as both /v1/cluster/replicaset and replicaset.list answer it. */
export function replicasetBody(snap: ReplicasetSnapshot, nodeId: number): Record<string, unknown> {
  return {
    node: nodeId,
    version: snap.version,
    replicaset: snap.tables.map((t) => ({
      relation: t.relation,
      status: 'committed',
      columns: t.columns,
    })),
  }
}

export function abortMessage(o: Outcome): string {
  const why = o.nodes.filter((n) => !n.ack).map((n) => n.reason ?? `node ${n.node} refused`)
  return `${o.op} ${o.relation} aborted: ${why.join('; ') || o.reason || 'refused'}`
}
