// TRAKTOR's per-node REST API, /v1/arbiter/*: same paths, bodies, status codes and answers,
// so the TRAKTOR tutorial's curl calls work unchanged.
import type { FastifyInstance } from 'fastify'
import { BadRequestError, ConflictError } from '../../errors.js'
import { parseRelationName } from '../../postgres/ident.js'
import type { LocalNode } from '../../postgres/local.js'
import { doc } from '../openapi.js'
import { present } from '../present.js'
import {
  CommittedBody,
  ControlInitBody,
  ControlTeardownBody,
  NodeStatusBody,
  ReplicasetStatusBody,
  ResolutionsBody,
  StagedBody,
  SubscribedBody,
  SubscribeRequest,
  UnsubscribedBody,
  UnsubscribeRequest,
} from '../shapes/index.js'

/** In mesh mode the arbiter owns these objects; a change by hand would split the cluster. */
const MESH_ROUTE: Record<string, string> = {
  control: 'nothing: in mesh mode the arbiter initialises its node itself when it starts',
  subscription:
    'nothing: in mesh mode the arbiter subscribes to every member itself (DELETE /v1/cluster/nodes/{id} removes a node)',
  replicaset: 'PUT or DELETE /v1/cluster/replicaset/{schema.table}',
}

export interface ArbiterRoutesOptions {
  mesh: boolean
  /** why this node is not healthy (added to /v1/arbiter/status; TRAKTOR's fields unchanged) */
  healthReasons?: () => string[]
}

export function arbiterRoutes(local: LocalNode, opts: ArbiterRoutesOptions = { mesh: false }) {
  return (app: FastifyInstance): void => {
    const node = local.nodeId
    const standaloneOnly = (what: keyof typeof MESH_ROUTE) => {
      if (!opts.mesh) return
      throw new ConflictError(
        `this arbiter runs in mesh mode: this node route changes nothing here; use ${MESH_ROUTE[what]}`,
        'ERR_MESH_MODE',
      )
    }

    const table = { relation: 'schema.table ("quoted" parts keep their case)' }
    const changes = [409, 503] as const

    app.put(
      '/v1/arbiter/control',
      {
        schema: doc({
          summary: 'Initialise this node: trktr schema, publication, protections; drops SUPERUSER',
          tag: 'arbiter',
          answers: { 201: [ControlInitBody, 'initialised'] },
          errors: changes,
        }),
      },
      async (_req, reply) => {
        standaloneOnly('control')
        const r = await local.initNode()
        await reply.code(201).send(present.controlInit(node, r))
      },
    )

    app.delete(
      '/v1/arbiter/control',
      {
        schema: doc({
          summary: "Remove traktor's objects (subscriptions, publication, schema) from this node",
          tag: 'arbiter',
          answers: { 200: [ControlTeardownBody, 'removed'] },
          errors: changes,
        }),
      },
      async () => {
        standaloneOnly('control')
        return present.controlTeardown(node, await local.teardown())
      },
    )

    app.put(
      '/v1/arbiter/subscription/control',
      {
        schema: doc({
          summary: 'Subscribe to a peer as trktr_sub_<self>_<inbound_node>',
          tag: 'arbiter',
          body: SubscribeRequest,
          answers: { 201: [SubscribedBody, 'subscribed'] },
          errors: [400, ...changes],
        }),
      },
      async (req, reply) => {
        standaloneOnly('subscription')
        const body = objectBody(req.body)
        const peer = nodeIdField(body, 'inbound_node')
        const conninfo = body.connection_string
        if (typeof conninfo !== 'string' || conninfo.trim() === '') {
          throw new BadRequestError('connection_string: required, a libpq connection string')
        }
        const r = await local.subscribe(peer, conninfo)
        await reply.code(201).send(present.subscribed(node, peer, r))
      },
    )

    app.delete(
      '/v1/arbiter/subscription/control',
      {
        schema: doc({
          summary: 'Drop the subscription to a peer',
          tag: 'arbiter',
          body: UnsubscribeRequest,
          answers: { 200: [UnsubscribedBody, 'dropped (or there was none)'] },
          errors: [400, ...changes],
        }),
      },
      async (req) => {
        standaloneOnly('subscription')
        const peer = nodeIdField(objectBody(req.body), 'inbound_node')
        return present.unsubscribed(node, peer, await local.unsubscribe(peer))
      },
    )

    app.put<{ Params: { relation: string } }>(
      '/v1/arbiter/replicaset/:relation',
      {
        schema: doc({
          summary: 'Stage a table for addition (pending-add)',
          tag: 'arbiter',
          params: table,
          answers: { 201: [StagedBody, 'staged'] },
          errors: [400, ...changes],
        }),
      },
      async (req, reply) => {
        standaloneOnly('replicaset')
        const rel = parseRelationName(req.params.relation)
        const status = await local.stage(rel, 'add')
        await reply.code(201).send(present.staged(node, req.params.relation, status))
      },
    )

    app.delete<{ Params: { relation: string } }>(
      '/v1/arbiter/replicaset/:relation',
      {
        schema: doc({
          summary: 'Stage a table for removal (pending-remove)',
          tag: 'arbiter',
          params: table,
          answers: { 200: [StagedBody, 'staged'] },
          errors: [400, ...changes],
        }),
      },
      async (req) => {
        standaloneOnly('replicaset')
        const rel = parseRelationName(req.params.relation)
        return present.staged(node, req.params.relation, await local.stage(rel, 'remove'))
      },
    )

    app.patch(
      '/v1/arbiter/replicaset',
      {
        schema: doc({
          summary: 'Commit the staged changes to the publication',
          tag: 'arbiter',
          answers: { 200: [CommittedBody, 'committed'] },
          errors: changes,
        }),
      },
      async () => {
        standaloneOnly('replicaset')
        const r = await local.commit()
        return present.committed(node, r, await local.replicaset())
      },
    )

    app.get(
      '/v1/arbiter/replicaset/status',
      {
        schema: doc({
          summary: 'The replicaset: [{relation, status}]',
          tag: 'arbiter',
          answers: { 200: [ReplicasetStatusBody, 'the replicaset'] },
          errors: changes,
        }),
      },
      async () => present.replicasetStatus(node, await local.replicaset()),
    )

    app.get(
      '/v1/arbiter/status',
      {
        schema: doc({
          summary: 'Node status',
          tag: 'arbiter',
          answers: { 200: [NodeStatusBody, 'status'] },
          errors: [503],
        }),
      },
      async () => present.nodeStatus(await local.status(), opts.healthReasons?.() ?? []),
    )

    app.get(
      '/v1/arbiter/resolution/history',
      {
        schema: doc({
          summary: 'Conflicts seen and how they were resolved',
          tag: 'arbiter',
          answers: { 200: [ResolutionsBody, 'the history'] },
          errors: changes,
        }),
      },
      async () => present.resolutions(node, await local.history()),
    )
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
