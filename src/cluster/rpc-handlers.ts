// The arbiter's side of /traktor/rpc/1.0.0: each method's params are schema-checked before
// anything runs; an unknown method or bad params is an error answer, never a crash.
import { z } from 'zod'
import type { Logger } from '../log.js'
import type { RpcHandler, RpcResponse } from '../mesh/types.js'
import * as cs from '../postgres/cluster-state.js'
import type { LocalNode } from '../postgres/local.js'
import { STEPS } from './proposals.js'
import type { Steps } from './steps.js'

const proposal = z.object({
  id: z.string().min(1).max(100),
  version: z.number().int().min(1),
  op: z.enum(['add', 'remove']),
  schema: z.string().min(1).max(63),
  table: z.string().min(1).max(63),
  columns: z.array(z.string().max(300)).max(1600),
  coordinator: z.number().int().min(0),
})

const schemas = {
  'proposal.prepare': z.object({ proposal }),
  'proposal.step': z.object({ proposal, step: z.enum(STEPS) }),
  'proposal.abort': z.object({ id: z.string().min(1).max(100) }),
  'proposal.status': z.object({ id: z.string().min(1).max(100) }),
  'replicaset.get': z.object({}),
  'subscriptions.refresh': z.object({ node: z.number().int().min(0) }),
  'node.status': z.object({}),
  'history.list': z.object({}),
  'node.remove': z.object({ node: z.number().int().min(0) }),
} as const

type Method = keyof typeof schemas

export interface HandlerDeps {
  local: LocalNode
  steps: Steps
  log: Logger
  nodeStatus: () => Promise<unknown>
  /** status of a proposal as this node knows it (coordinator fencing included) */
  proposalStatus: (id: string) => Promise<{ decision: 'commit' | 'abort' | 'pending' | 'unknown' }>
  removeNode: (node: number) => Promise<void>
}

export function rpcHandler(deps: HandlerDeps): RpcHandler {
  const log = deps.log.child({ component: 'rpc' })
  return async (from, req): Promise<RpcResponse> => {
    if (!Object.hasOwn(schemas, req.method)) {
      return {
        ok: false,
        error: {
          code: 'ERR_NO_METHOD',
          message: `unknown method ${String(req.method).slice(0, 60)}`,
        },
      }
    }
    const method = req.method as Method
    const parsed = schemas[method].safeParse(req.params ?? {})
    if (!parsed.success) {
      log.warn({ from, method }, 'rpc with bad params')
      return {
        ok: false,
        error: { code: 'ERR_BAD_PARAMS', message: parsed.error.issues[0]?.message ?? 'bad params' },
      }
    }
    try {
      return { ok: true, result: await dispatch(deps, method, parsed.data as never) }
    } catch (err) {
      log.warn({ from, method, err: (err as Error).message }, 'rpc failed')
      return { ok: false, error: { code: 'ERR_RPC_HANDLER', message: (err as Error).message } }
    }
  }
}

type Params<M extends Method> = z.infer<(typeof schemas)[M]>

async function dispatch(deps: HandlerDeps, method: Method, raw: unknown): Promise<unknown> {
  const { local, steps } = deps
  // raw was parsed by schemas[method] just before
  const p = <M extends Method>(_m: M) => raw as Params<M>
  switch (method) {
    case 'proposal.prepare':
      return await steps.prepare(p(method).proposal)
    case 'proposal.step':
      await steps.run(p(method).proposal, p(method).step)
      return { done: true }
    case 'proposal.abort':
      await steps.abort(p(method).id)
      return { aborted: true }
    case 'proposal.status':
      return await deps.proposalStatus(p(method).id)
    case 'replicaset.get':
      return await cs.replicasetSnapshot(local.db)
    case 'subscriptions.refresh':
      await local.refreshFrom(p(method).node)
      return { refreshed: true }
    case 'node.status':
      return await deps.nodeStatus()
    case 'history.list':
      return await local.history()
    case 'node.remove':
      await deps.removeNode(p(method).node)
      return { removed: true }
  }
}
