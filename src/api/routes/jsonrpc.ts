// POST /rpc: JSON-RPC 2.0 with the cluster operations as methods. Batches, notifications
// (no id: no answer), the standard error codes, and -32000..-32099 for ours.
import type { FastifyInstance } from 'fastify'
import type { z } from 'zod'
import type { Cluster } from '../../cluster/cluster.js'
import { BadRequestError, TraktorError } from '../../errors.js'
import { parseRelationName } from '../../postgres/ident.js'
import { notMesh } from '../errors.js'
import { commitRequest, ddlRequest, relationOf, repairSource } from '../input.js'
import { doc, ref } from '../openapi.js'
import { abortMessage, ddlAbortMessage, present, repairIncompleteMessage } from '../present.js'
// one namespace: this route's list of shapes is not written out a second time beside cluster.ts
import * as shapes from '../shapes/index.js'

export const RPC_ERRORS = {
  parse: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
  /** ours */
  aborted: -32001,
  refused: -32002,
  notMesh: -32003,
  unavailable: -32004,
} as const

interface Signature {
  summary: string
  /** the params as the description writes them (default: the table a method names) */
  usage?: string
  params?: z.ZodType
  result: z.ZodType
}

/** The methods as the document lists them; the table below implements exactly these. */
const METHODS = {
  'cluster.status': { summary: 'as GET /v1/cluster/status', result: shapes.ClusterStatusBody },
  'cluster.nodes': { summary: 'as GET /v1/cluster/nodes', result: shapes.NodesBody },
  'replicaset.add': {
    summary: 'as PUT /v1/cluster/replicaset/{table}; aborted: error -32001, the outcome as data',
    params: shapes.RpcTableParams,
    result: shapes.OutcomeBody,
  },
  'replicaset.remove': {
    summary: 'as DELETE /v1/cluster/replicaset/{table}; aborted: error -32001',
    params: shapes.RpcTableParams,
    result: shapes.OutcomeBody,
  },
  'replicaset.list': {
    summary: 'as GET /v1/cluster/replicaset',
    result: shapes.ClusterReplicasetBody,
  },
  'history.list': { summary: 'as GET /v1/cluster/history', result: shapes.ClusterHistoryBody },
  'cluster.check': {
    summary: 'as GET /v1/cluster/check, or /v1/cluster/check/{table} with a table',
    usage: '{} or {"table": "schema.table"}',
    params: shapes.RpcCheckParams,
    result: shapes.CheckBody,
  },
  'cluster.resync': {
    summary: 'as POST /v1/cluster/nodes/{id}/resync',
    usage: '{"node": NODE}',
    params: shapes.RpcResyncParams,
    result: shapes.ResyncBody,
  },
  'cluster.repair': {
    summary:
      'as POST /v1/cluster/check/{table}/repair; rows still differing: error -32002, the repair as data',
    usage: '{"table": "schema.table", "from": NODE (optional)}',
    params: shapes.RpcRepairParams,
    result: shapes.RepairBody,
  },
  'cluster.commit': {
    summary: 'as PUT /v1/cluster/commit; aborted: error -32001, the outcome as data',
    usage: '{"mode": "sync" | "async", "quorum": K (optional)}',
    params: shapes.CommitRequest,
    result: shapes.CommitBody,
  },
  'cluster.ddl': {
    summary: 'as POST /v1/cluster/ddl; aborted: error -32001, the outcome as data',
    usage: '{"sql": "one statement", "tables": ["schema.table"] (optional)}',
    params: shapes.DdlRequest,
    result: shapes.DdlBody,
  },
} satisfies Record<string, Signature>
type MethodName = keyof typeof METHODS

type Id = string | number | null
class MethodError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message)
  }
}

const MAX_BATCH = 100

type Method = (params: unknown) => Promise<unknown>

export function jsonRpcRoutes(cluster: Cluster | undefined, nodeId: number) {
  const need = (): Cluster => {
    if (!cluster) throw new MethodError(RPC_ERRORS.notMesh, notMesh().message)
    return cluster
  }
  const table = (params: unknown): string => {
    const t = (params as { table?: unknown } | undefined)?.table
    if (
      typeof params !== 'object' ||
      params === null ||
      Array.isArray(params) ||
      typeof t !== 'string'
    ) {
      throw new MethodError(RPC_ERRORS.invalidParams, 'params must be {"table": "schema.table"}')
    }
    try {
      parseRelationName(t)
    } catch (err) {
      throw new MethodError(RPC_ERRORS.invalidParams, (err as Error).message)
    }
    return t
  }
  const change = (op: 'add' | 'remove') => async (params: unknown) => {
    const o = await need().propose(op, parseRelationName(table(params)))
    if (o.outcome === 'aborted')
      throw new MethodError(RPC_ERRORS.aborted, abortMessage(o), present.outcome(o))
    return present.outcome(o)
  }
  const methods: Record<MethodName, Method> = {
    'cluster.status': async () => present.clusterStatus(await need().status()),
    'cluster.nodes': async () => present.nodes(nodeId, need().nodes()),
    'replicaset.add': change('add'),
    'replicaset.remove': change('remove'),
    // the same shapes as GET /v1/cluster/replicaset and /v1/cluster/history
    'replicaset.list': async () => present.clusterReplicaset(nodeId, await need().replicaset()),
    'history.list': async () => present.clusterHistory(nodeId, await need().history()),
    // the same shapes as GET /v1/cluster/check[/{table}] and POST .../repair
    'cluster.check': async (params) => {
      const t = (params as { table?: unknown } | undefined)?.table
      if (t === undefined) {
        if (params !== undefined && (typeof params !== 'object' || Array.isArray(params)))
          throw new MethodError(
            RPC_ERRORS.invalidParams,
            'params must be {} or {"table": "schema.table"}',
          )
        return present.check(await need().check())
      }
      return present.check(await need().check(relationOf(table(params))))
    },
    'cluster.commit': async (params) => {
      const c = need()
      let want: ReturnType<typeof commitRequest>
      try {
        want = commitRequest(params)
      } catch (err) {
        throw new MethodError(RPC_ERRORS.invalidParams, (err as Error).message)
      }
      const r = await c.setCommit(want)
      if (r.outcome === 'aborted')
        throw new MethodError(RPC_ERRORS.aborted, `aborted: ${r.reason ?? 'refused'}`, r)
      return r
    },
    'cluster.ddl': async (params) => {
      const c = need()
      let want: ReturnType<typeof ddlRequest>
      try {
        want = ddlRequest(params)
      } catch (err) {
        throw new MethodError(RPC_ERRORS.invalidParams, (err as Error).message)
      }
      const d = await c.ddl(want).catch((err: unknown) => {
        // a statement kind not run, or a dry run's finding: the params are at fault
        if (err instanceof BadRequestError)
          throw new MethodError(RPC_ERRORS.invalidParams, err.message)
        throw err
      })
      if (d.outcome === 'aborted')
        throw new MethodError(RPC_ERRORS.aborted, ddlAbortMessage(d), present.ddl(d))
      return present.ddl(d)
    },
    'cluster.resync': async (params) => {
      const c = need()
      const n = (params as { node?: unknown } | undefined)?.node
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
        throw new MethodError(RPC_ERRORS.invalidParams, 'params must be {"node": NODE}')
      return await c.resync(n)
    },
    'cluster.repair': async (params) => {
      const t = relationOf(table(params))
      let from: number | undefined
      try {
        from = repairSource(undefined, { from: (params as { from?: unknown }).from })
      } catch (err) {
        throw new MethodError(RPC_ERRORS.invalidParams, (err as Error).message)
      }
      const r = await need().repair(t, from)
      if (r.after.verdict === 'differs')
        throw new MethodError(RPC_ERRORS.refused, repairIncompleteMessage(r), present.repair(r))
      return present.repair(r)
    },
  }

  async function one(req: unknown): Promise<object | undefined> {
    if (typeof req !== 'object' || req === null || Array.isArray(req)) {
      return fail(null, { code: RPC_ERRORS.invalidRequest, message: 'a request must be an object' })
    }
    const r = req as { jsonrpc?: unknown; method?: unknown; params?: unknown; id?: unknown }
    const hasId = Object.hasOwn(r, 'id')
    const id = r.id
    const validId =
      id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))
    if (r.jsonrpc !== '2.0' || typeof r.method !== 'string' || (hasId && !validId)) {
      return fail(validId ? (id as Id) : null, {
        code: RPC_ERRORS.invalidRequest,
        message: 'not a JSON-RPC 2.0 request',
      })
    }
    if (r.params !== undefined && (typeof r.params !== 'object' || r.params === null)) {
      return hasId
        ? fail(id as Id, {
            code: RPC_ERRORS.invalidParams,
            message: 'params must be an object or array',
          })
        : undefined
    }
    const method = Object.hasOwn(methods, r.method) ? methods[r.method as MethodName] : undefined
    let result: unknown
    try {
      if (!method)
        throw new MethodError(
          RPC_ERRORS.methodNotFound,
          `method not found: ${r.method.slice(0, 80)}`,
        )
      result = await method(r.params)
    } catch (err) {
      return hasId ? fail(id as Id, toRpcError(err)) : undefined
    }
    return hasId ? present.rpcResult(id, result) : undefined
  }

  return (app: FastifyInstance): void => {
    app.post('/rpc', { schema: rpcDoc() }, async (req, reply) => {
      const body = req.body
      if (body === undefined) {
        return fail(null, { code: RPC_ERRORS.invalidRequest, message: 'empty request' })
      }
      if (Array.isArray(body)) {
        if (body.length === 0 || body.length > MAX_BATCH) {
          return fail(null, {
            code: RPC_ERRORS.invalidRequest,
            message: `a batch holds 1 to ${MAX_BATCH} requests`,
          })
        }
        const out = (await Promise.all(body.map(one))).filter((x) => x !== undefined)
        if (out.length === 0) return await reply.code(204).send()
        return out
      }
      const out = await one(body)
      if (out === undefined) return await reply.code(204).send()
      return out
    })
  }
}

/** The route's document: the envelope, and every method with its params and result. */
function rpcDoc() {
  const list = Object.entries(METHODS) as Array<[string, Signature]>
  return doc({
    summary: 'JSON-RPC 2.0: the cluster operations as methods',
    description: [
      'A JSON-RPC 2.0 request ({"jsonrpc": "2.0", "method", "params", "id"}) or a batch of 1 to',
      `${MAX_BATCH}; without an id, a notification (no answer). Errors are answers (HTTP 200):`,
      'see RpcError for the codes. Methods (x-jsonrpc-methods has their schemas):',
      '',
      ...list.map(
        ([name, m]) =>
          `- \`${name}\`${m.params ? ` \`${m.usage ?? '{"table": "schema.table"}'}\`` : ''}: ${m.summary}`,
      ),
    ].join('\n'),
    tag: 'jsonrpc',
    body: shapes.RpcCallShape,
    answers: {
      200: [shapes.RpcAnswerShape, 'the answer (an error is an answer too)'],
      204: [null, 'only notifications: no answer'],
    },
    'x-jsonrpc-methods': list.map(([name, m]) => ({
      name,
      summary: m.summary,
      ...(m.params ? { params: ref(m.params) } : {}),
      result: ref(m.result),
    })),
  })
}

function fail(id: Id, error: shapes.RpcError): object {
  return present.rpcError(id, error)
}

function toRpcError(err: unknown): shapes.RpcError {
  if (err instanceof MethodError) {
    return {
      code: err.code,
      message: err.message,
      ...(err.data === undefined ? {} : { data: err.data }),
    }
  }
  if (err instanceof TraktorError) {
    const code =
      err.code === 'ERR_TABLE_NAME'
        ? RPC_ERRORS.invalidParams
        : err.code === 'ERR_POSTGRES_CONNECTION'
          ? RPC_ERRORS.unavailable
          : RPC_ERRORS.refused
    return { code, message: err.message, data: { error: err.code } }
  }
  return { code: RPC_ERRORS.internal, message: (err as Error)?.message ?? 'internal error' }
}
