// POST /rpc: JSON-RPC 2.0 with the cluster operations as methods. Batches, notifications
// (no id: no answer), the standard error codes, and -32000..-32099 for ours.
import type { FastifyInstance } from 'fastify'
import type { Cluster } from '../../cluster/cluster.js'
import { TraktorError } from '../../errors.js'
import { parseRelationName } from '../../postgres/ident.js'
import { abortMessage, historyRow, notMesh, outcomeBody, replicasetBody } from './cluster.js'

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

type Id = string | number | null
interface RpcError {
  code: number
  message: string
  data?: unknown
}
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
      throw new MethodError(RPC_ERRORS.aborted, abortMessage(o), outcomeBody(o))
    return outcomeBody(o)
  }
  const methods: Record<string, Method> = {
    'cluster.status': async () => await need().status(),
    'cluster.nodes': async () => ({ node: nodeId, nodes: need().nodes() }),
    'replicaset.add': change('add'),
    'replicaset.remove': change('remove'),
    // the same shapes as GET /v1/cluster/replicaset and /v1/cluster/history
    'replicaset.list': async () => replicasetBody(await need().replicaset(), nodeId),
    'history.list': async () => ({
      node: nodeId,
      resolutions: (await need().history()).map(historyRow),
    }),
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
    const method = Object.hasOwn(methods, r.method) ? methods[r.method] : undefined
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
    return hasId ? { jsonrpc: '2.0', id, result } : undefined
  }

  return (app: FastifyInstance): void => {
    app.post('/rpc', async (req, reply) => {
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

function fail(id: Id, error: RpcError): object {
  return { jsonrpc: '2.0', id, error }
}

function toRpcError(err: unknown): RpcError {
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
