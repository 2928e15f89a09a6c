// /v1/cluster/*: the whole cluster from any node (mesh mode). In standalone mode every route
// answers 409 ERR_NOT_MESH, so a script learns why instead of meeting a 404.
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Cluster } from '../../cluster/cluster.js'
import { BadRequestError } from '../../errors.js'
import { parseRelationName } from '../../postgres/ident.js'
import { notMesh } from '../errors.js'
import { commitRequest, ddlRequest, relationOf, repairSource } from '../input.js'
import { doc } from '../openapi.js'
import { outcomeStatus, present, repairStatus } from '../present.js'
import {
  AbortedBody,
  CheckBody,
  ClusterHistoryBody,
  ClusterReplicasetBody,
  ClusterStatusBody,
  CommitBody,
  CommitRequest,
  DdlAbortedBody,
  DdlBody,
  DdlRequest,
  ErrorBody,
  NodesBody,
  OutcomeBody,
  RepairBody,
  RepairIncompleteBody,
  RepairRequest,
  ResyncBody,
  RosterChangeBody,
} from '../shapes/index.js'

const reads = [409, 503] as const
const tableParam = { relation: 'schema.table ("quoted" parts keep their case)' }
const nodeParam = { id: 'the node id (not the asked node itself)' }

export function clusterRoutes(cluster: Cluster | undefined, nodeId: number) {
  return (app: FastifyInstance): void => {
    const need = (): Cluster => {
      if (!cluster) throw notMesh()
      return cluster
    }
    const propose = async (op: 'add' | 'remove', relation: string, reply: FastifyReply) => {
      const c = need()
      const o = await c.propose(op, parseRelationName(relation))
      if (o.outcome === 'aborted') {
        await reply.code(409).send(present.aborted(o))
        return
      }
      await reply.code(outcomeStatus(o)).send(present.outcome(o))
    }
    const change = (summary: string, ok: 200 | 201) =>
      doc({
        summary,
        description:
          'Two-phase: every member acknowledges, or nothing changes. 409 with the outcome when a member refused.',
        tag: 'cluster',
        params: tableParam,
        answers: {
          200: [OutcomeBody, ok === 200 ? 'committed, or unchanged' : 'unchanged: nothing to do'],
          ...(ok === 201 ? { 201: [OutcomeBody, 'committed'] as const } : {}),
          409: [[AbortedBody, ErrorBody], 'aborted (the refusals), or refused'],
        },
        errors: [400, 503],
      })

    app.get(
      '/v1/cluster/status',
      {
        schema: doc({
          summary: 'Every member: state, replication, conflicts, lag, subscriptions',
          tag: 'cluster',
          answers: { 200: [ClusterStatusBody, 'the cluster'] },
          errors: reads,
        }),
      },
      async () => present.clusterStatus(await need().status()),
    )
    app.get(
      '/v1/cluster/nodes',
      {
        schema: doc({
          summary: 'The members as this arbiter sees them',
          tag: 'cluster',
          answers: { 200: [NodesBody, 'the members'] },
          errors: [409],
        }),
      },
      async () => present.nodes(nodeId, need().nodes()),
    )
    const nodeIdParam = (id: string, verb: string): number => {
      if (!/^\d{1,10}$/.test(id)) throw new BadRequestError('node id must be an integer >= 0')
      const n = Number(id)
      if (n === nodeId) throw new BadRequestError(`a node cannot ${verb} itself; ask another node`)
      return n
    }
    app.delete<{ Params: { id: string } }>(
      '/v1/cluster/nodes/:id',
      {
        schema: doc({
          summary: 'Remove a node from the cluster (ask one of the other nodes)',
          tag: 'cluster',
          params: nodeParam,
          answers: { 200: [RosterChangeBody, 'removed; which members took it'] },
          errors: [400, 404, ...reads],
        }),
      },
      async (req) => {
        const c = need()
        return present.rosterChange(await c.removeNode(nodeIdParam(req.params.id, 'remove')))
      },
    )
    // re-admit a removed node: it joins again as a new node would
    app.put<{ Params: { id: string } }>(
      '/v1/cluster/nodes/:id',
      {
        schema: doc({
          summary: 'Take a removed node back: it joins again as a new node would',
          tag: 'cluster',
          params: nodeParam,
          answers: { 200: [RosterChangeBody, 're-admitted; which members took it'] },
          errors: [400, ...reads],
        }),
      },
      async (req) => {
        const c = need()
        return present.rosterChange(await c.readmitNode(nodeIdParam(req.params.id, 're-admit')))
      },
    )
    // copy the cluster's data again on a node (this one included): the cure for a lost slot
    app.post<{ Params: { id: string } }>(
      '/v1/cluster/nodes/:id/resync',
      {
        schema: doc({
          summary: "Copy the cluster's data again on a node (its rows are replaced)",
          description:
            'The node drops its subscriptions and copies every replicated table from a live member under the join procedure (README "How a node joins"). Answers at once; GET /v1/cluster/nodes shows join_state copying and join_percent until it is ready again.',
          tag: 'cluster',
          params: { id: 'the node id (this node, or a live member)' },
          answers: { 202: [ResyncBody, 'copying'] },
          errors: [400, 404, ...reads],
        }),
      },
      async (req, reply) => {
        if (!/^\d{1,10}$/.test(req.params.id))
          throw new BadRequestError('node id must be an integer >= 0')
        const r = await need().resync(Number(req.params.id))
        await reply.code(202).send(r)
      },
    )
    app.get(
      '/v1/cluster/replicaset',
      {
        schema: doc({
          summary: 'The replicated tables and the replicaset version',
          tag: 'cluster',
          answers: { 200: [ClusterReplicasetBody, 'the replicaset'] },
          errors: reads,
        }),
      },
      async () => present.clusterReplicaset(nodeId, await need().replicaset()),
    )
    app.put<{ Params: { relation: string } }>(
      '/v1/cluster/replicaset/:relation',
      { schema: change('Add a table on every node', 201) },
      async (req, reply) => {
        await propose('add', req.params.relation, reply)
      },
    )
    app.delete<{ Params: { relation: string } }>(
      '/v1/cluster/replicaset/:relation',
      { schema: change('Remove a table from every node', 200) },
      async (req, reply) => {
        await propose('remove', req.params.relation, reply)
      },
    )
    app.put(
      '/v1/cluster/commit',
      {
        schema: doc({
          summary: 'Set the commit mode (async, or sync with a quorum) on every member at once',
          description:
            'Every member must be alive and able to run the mode (sync needs the grants of README, Synchronous mode), or nothing changes (409 aborted, with the reason). Then each member stores and runs it; one whose answer is lost adopts it from the heartbeats. The stored mode wins over the config file from then on.',
          tag: 'cluster',
          body: CommitRequest,
          answers: {
            200: [CommitBody, 'committed on every member, or unchanged'],
            409: [[CommitBody, ErrorBody], 'aborted (a member down or unable), or refused'],
          },
          errors: [400, 503],
        }),
      },
      async (req, reply) => {
        const c = need()
        const r = await c.setCommit(commitRequest(req.body))
        await reply.code(r.outcome === 'aborted' ? 409 : 200).send(r)
      },
    )
    app.post(
      '/v1/cluster/ddl',
      {
        schema: doc({
          summary:
            'Change the schema on every node at once (ALTER TABLE, indexes, CREATE/DROP TABLE)',
          description:
            "One statement, run first in a transaction rolled back here to learn the replicated tables it changes. Then two-phase: every member fences those tables (writers wait), every member applies every peer's changes to them (bounded: a lagging node aborts the change, named), every node runs the statement and PREPAREs it; only when every node prepared it do all commit. Any failure on any node rolls it back everywhere (409, with that node's error). A table it creates joins the replicaset; a replicated table it drops leaves it. Writers still waiting when the statement needs the table fail with SQLSTATE 40001 (retry). README: Changing the schema.",
          tag: 'cluster',
          body: DdlRequest,
          answers: {
            200: [DdlBody, 'committed on every node'],
            409: [[DdlAbortedBody, ErrorBody], 'aborted on every node (the refusals), or refused'],
          },
          errors: [400, 503],
        }),
      },
      async (req, reply) => {
        const d = await need().ddl(ddlRequest(req.body))
        if (d.outcome === 'aborted') {
          await reply.code(409).send(present.ddlAborted(d))
          return
        }
        await reply.code(200).send(present.ddl(d))
      },
    )
    app.get(
      '/v1/cluster/history',
      {
        schema: doc({
          summary: 'Conflicts and apply errors the resolvers recorded, every node',
          tag: 'cluster',
          answers: { 200: [ClusterHistoryBody, 'newest first'] },
          errors: reads,
        }),
      },
      async () => present.clusterHistory(nodeId, await need().history()),
    )
    const checkDoc = (summary: string, params?: typeof tableParam) =>
      doc({
        summary,
        description:
          'Per table: the rows per node, a verdict, the differing keys as their values (the first 100, all counted) and the time it took. A difference still moving after three rounds is unsettled, never differing.',
        tag: 'cluster',
        ...(params ? { params } : {}),
        answers: {
          200: [CheckBody, 'the comparison (a failed member is a verdict, not an error)'],
        },
        errors: params ? [400, ...reads] : reads,
      })
    app.get(
      '/v1/cluster/check',
      { schema: checkDoc('Compare every replicated table on every member') },
      async () => present.check(await need().check()),
    )
    app.get<{ Params: { relation: string } }>(
      '/v1/cluster/check/:relation',
      { schema: checkDoc('Compare one replicated table on every member', tableParam) },
      async (req) => present.check(await need().check(relationOf(req.params.relation))),
    )
    app.post<{ Params: { relation: string }; Querystring: { from?: string } }>(
      '/v1/cluster/check/:relation/repair',
      {
        schema: doc({
          summary: "Set every settled differing row to the last writer's version (or node from's)",
          description:
            "Written on each node in a session under the winning node's replication origin (trktr_lww_<node>) with its commit time, so nothing is re-published and the row-level resolver compares a repaired row the same way everywhere. Checks again at the end.",
          tag: 'cluster',
          params: tableParam,
          query: { from: ['integer', "take this node's version of every differing row"] },
          body: RepairRequest,
          answers: {
            200: [RepairBody, 'no settled difference left'],
            409: [
              [RepairIncompleteBody, ErrorBody],
              'rows still differ after it (ERR_REPAIR_INCOMPLETE), or refused',
            ],
          },
          errors: [400, 503],
        }),
      },
      async (req, reply) => {
        const c = need()
        const from = repairSource(req.query?.from, req.body)
        const r = await c.repair(relationOf(req.params.relation), from)
        const status = repairStatus(r)
        await reply
          .code(status)
          .send(status === 200 ? present.repair(r) : present.repairIncomplete(r))
      },
    )
  }
}
