// TRAKTOR's per-node REST API, /v1/arbiter/*: same paths, bodies, status codes and answers,
// so the TRAKTOR tutorial's curl calls work unchanged.
import type { FastifyInstance } from 'fastify'
import { BadRequestError } from '../../errors.js'
import type { HistoryEntry } from '../../postgres/history.js'
import { parseRelationName } from '../../postgres/ident.js'
import type { LocalNode } from '../../postgres/local.js'

export function arbiterRoutes(local: LocalNode) {
  return (app: FastifyInstance): void => {
    const node = local.nodeId

    app.put('/v1/arbiter/control', async (_req, reply) => {
      const r = await local.initNode()
      await reply
        .code(201)
        .send({ node, initialized: true, created: r.created, protected: r.protected })
    })

    app.delete('/v1/arbiter/control', async () => {
      const r = await local.teardown()
      return { node, initialized: false, slots_left_on_peers: r.slotsLeft }
    })

    app.put('/v1/arbiter/subscription/control', async (req, reply) => {
      const body = objectBody(req.body)
      const peer = nodeIdField(body, 'inbound_node')
      const conninfo = body.connection_string
      if (typeof conninfo !== 'string' || conninfo.trim() === '') {
        throw new BadRequestError('connection_string: required, a libpq connection string')
      }
      const r = await local.subscribe(peer, conninfo)
      await reply
        .code(201)
        .send({ node, subscription: `trktr_sub_${node}_${peer}`, created: r.created })
    })

    app.delete('/v1/arbiter/subscription/control', async (req) => {
      const peer = nodeIdField(objectBody(req.body), 'inbound_node')
      const r = await local.unsubscribe(peer)
      return {
        node,
        subscription: `trktr_sub_${node}_${peer}`,
        dropped: r.existed,
        slot_left_on_peer: r.slotLeft,
      }
    })

    app.put<{ Params: { relation: string } }>(
      '/v1/arbiter/replicaset/:relation',
      async (req, reply) => {
        const rel = parseRelationName(req.params.relation)
        const status = await local.stage(rel, 'add')
        await reply.code(201).send({ node, relation: req.params.relation, status })
      },
    )

    app.delete<{ Params: { relation: string } }>(
      '/v1/arbiter/replicaset/:relation',
      async (req) => {
        const rel = parseRelationName(req.params.relation)
        const status = await local.stage(rel, 'remove')
        return { node, relation: req.params.relation, status }
      },
    )

    app.patch('/v1/arbiter/replicaset', async () => {
      const r = await local.commit()
      return { node, added: r.added, removed: r.removed, replicaset: await local.replicaset() }
    })

    app.get('/v1/arbiter/replicaset/status', async () => ({
      node,
      replicaset: await local.replicaset(),
    }))

    app.get('/v1/arbiter/status', async () => await local.status())

    app.get('/v1/arbiter/resolution/history', async () => ({
      node,
      resolutions: (await local.history()).map(resolutionRow),
    }))
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequestError('body: expected a JSON object')
  }
  return body as Record<string, unknown>
}

function nodeIdField(body: Record<string, unknown>, key: string): number {
  const v = body[key]
  const n = typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 2_147_483_647) {
    throw new BadRequestError(`${key}: required, a node id (integer >= 0)`)
  }
  return n
}

/** One trktr.history row as the API answers it: TRAKTOR's fields first, then ours. */
export function resolutionRow(h: HistoryEntry): Record<string, unknown> {
  return {
    occurred: h.occurred,
    lsn: h.lsn,
    relation: h.relation,
    sql_state_code: h.sqlStateCode,
    resolved: h.resolved,
    subscription: h.subscription,
    reason: h.reason,
    key: h.key,
    value: h.value,
    kind: h.kind,
    action: h.action,
  }
}
