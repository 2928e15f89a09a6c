// JSON-RPC 2.0 at POST /rpc: the envelopes, and the params its methods take.
import { z } from 'zod'
import { shape } from './registry.js'

const rpcId = z.union([z.string(), z.number(), z.null()])

export const RpcRequestShape = shape(
  'RpcRequest',
  'A JSON-RPC 2.0 request; without an id it is a notification (no answer)',
  z.looseObject({
    jsonrpc: z.literal('2.0'),
    method: z.string(),
    params: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
    id: rpcId.optional(),
  }),
)

export const RpcErrorShape = shape(
  'RpcError',
  'JSON-RPC 2.0 error: -32700 parse, -32600 invalid request, -32601 method not found, -32602 invalid params, -32603 internal; ours: -32001 aborted, -32002 refused, -32003 not mesh, -32004 unavailable',
  z.strictObject({ code: z.int(), message: z.string(), data: z.unknown().optional() }),
)
export type RpcError = z.infer<typeof RpcErrorShape>

export const RpcResponseShape = shape(
  'RpcResponse',
  'A JSON-RPC 2.0 answer: a result or an error',
  z.union([
    z.strictObject({ jsonrpc: z.literal('2.0'), id: rpcId, result: z.unknown() }),
    z.strictObject({ jsonrpc: z.literal('2.0'), id: rpcId, error: RpcErrorShape }),
  ]),
)

export const RpcCallShape = shape(
  'RpcCall',
  'One request, or a batch of 1 to 100',
  z.union([RpcRequestShape, z.array(RpcRequestShape).min(1).max(100)]),
)

export const RpcAnswerShape = shape(
  'RpcAnswer',
  "One answer, or a batch's answers (notifications get none)",
  z.union([RpcResponseShape, z.array(RpcResponseShape)]),
)

export const RpcTableParams = shape(
  'RpcTableParams',
  'The table a replicaset method changes',
  z.looseObject({ table: z.string().describe('schema.table ("quoted" parts keep their case)') }),
)
