// The arbiter's side of /traktor/rpc/1.0.0: only members are answered (holding the swarm key
// is not enough: a peer must have announced itself by heartbeat), each method's params are
// schema-checked before anything runs; an unknown method or bad params is an error answer,
// never a crash.
import { z } from 'zod'
import type { Logger } from '../log.js'
import type { RpcHandler, RpcResponse } from '../mesh/types.js'
import type * as cs from '../postgres/cluster-state.js'
import { MAX_DDL_BYTES } from '../postgres/ddl-statement.js'
import type { LocalNode } from '../postgres/local.js'
import type { CheckNode } from './check-node.js'
import type { CheckRecord } from './checker.js'
import type { CommitMode } from './commit-mode.js'
import type { JoinPeer } from './join-decide.js'
import { STEPS } from './proposals.js'
import type { Steps } from './steps.js'

const rel = z.object({ schema: z.string().min(1).max(63), table: z.string().min(1).max(63) })
const proposal = z.object({
  id: z.string().min(1).max(100),
  version: z.number().int().min(1),
  op: z.enum(['add', 'remove', 'ddl']),
  schema: z.string().min(1).max(63),
  table: z.string().min(1).max(63),
  columns: z.array(z.string().max(300)).max(1600),
  coordinator: z.number().int().min(0),
  ddl: z
    .object({
      sql: z.string().min(1).max(MAX_DDL_BYTES),
      kind: z.enum(['alter-table', 'create-index', 'drop-index', 'create-table', 'drop-table']),
      fenced: z.array(rel).max(1000),
      created: z.array(rel).max(1000),
      dropped: z.array(rel).max(1000),
    })
    .optional(),
  copy: z
    .object({ node: z.int().min(0), rows: z.int().min(1).nullable(), hash: z.string().max(32) })
    .optional(),
})

// the consistency check's calls: sizes bounded so that no answer outgrows a mesh frame
const table = z.string().min(3).max(300)
const timeoutMs = z.int().min(1).max(3_600_000)
const bucket = z
  .int()
  .min(0)
  .max(2 ** 48)
const key = z.string().min(2).max(10_000)
const checkRows = z.union([
  z.object({ table, keys: z.array(key).max(10_000), timeoutMs }),
  z.object({
    table,
    bits: z.int().min(0).max(48),
    buckets: z.array(bucket).max(100_000),
    timeoutMs,
  }),
])
const repairItem = z.object({
  k: key,
  expect: z.string().max(32).nullable(),
  image: z.string().max(1_000_000).nullable(),
  ts: z
    .string()
    .regex(/^-?\d{1,20}$/)
    .nullable(),
  winner: z.int().min(0),
  rule: z.string().max(200).optional(),
})

const schemas = {
  'proposal.prepare': z.object({ proposal }),
  'proposal.step': z.object({
    proposal,
    step: z.enum(STEPS),
    floors: z.record(z.string().max(400), z.string().regex(/^-?\d{1,20}$/)).optional(),
  }),
  'sequences.used': z.object({
    tables: z
      .array(z.object({ schema: z.string().min(1).max(63), table: z.string().min(1).max(63) }))
      .max(10_000),
  }),
  'proposal.abort': z.object({ id: z.string().min(1).max(100) }),
  'proposal.ddl': z.object({ id: z.string().min(1).max(100) }),
  'proposal.status': z.object({ id: z.string().min(1).max(100) }),
  'replicaset.get': z.object({}),
  'subscriptions.refresh': z.object({ node: z.number().int().min(0) }),
  'subscriptions.recreate': z.object({ node: z.number().int().min(0) }),
  'node.status': z.object({}),
  'history.list': z.object({}),
  'roster.get': z.object({}),
  'members.list': z.object({}),
  'node.resync': z.object({}),
  'check.hashes': z.object({
    table,
    bits: z.int().min(0).max(48),
    parentBits: z.int().min(0).max(48).optional(),
    parents: z.array(bucket).max(100_000).optional(),
    timeoutMs,
  }),
  'check.rows': checkRows,
  'check.page': z.object({ token: z.string().min(1).max(100) }),
  'check.sync': z.object({ nodes: z.array(z.int().min(0)).max(1000), timeoutMs }),
  'check.images': z.object({ table, keys: z.array(key).max(10_000), timeoutMs }),
  'check.tombstones': z.object({ table, keys: z.array(key).max(10_000), timeoutMs }),
  'check.repair': z.object({
    table,
    items: z.array(repairItem).max(100_000),
    checkId: z.string().min(1).max(100),
    coordinator: z.int().min(0),
    rule: z.string().max(200),
    timeoutMs,
  }),
  'check.report': z.object({
    relation: table,
    verdict: z.enum(['consistent', 'differs', 'unsettled', 'failed']),
    differing: z.int().min(0),
    unsettled: z.int().min(0),
    atMs: z.number().min(0),
    durationMs: z.number().min(0),
    coordinator: z.int().min(0),
  }),
  'commit.check': z.object({ mode: z.enum(['async', 'sync']) }),
  'commit.set': z.object({
    setting: z.object({
      mode: z.enum(['async', 'sync']),
      quorum: z.int().min(1).max(1000).optional(),
      changed: z.int().min(1),
    }),
  }),
  'roster.merge': z.object({
    entries: z
      .array(
        z.object({
          node: z.int().min(0),
          removedMs: z.number().min(0),
          readmittedMs: z.number().min(0).nullable(),
        }),
      )
      .max(10_000),
  }),
} as const

type Method = keyof typeof schemas

export interface HandlerDeps {
  /** a peer that announced itself by heartbeat (a joiner not heard yet retries next pass) */
  isMember: (peerId: string) => boolean
  local: LocalNode
  steps: Steps
  log: Logger
  nodeStatus: () => Promise<unknown>
  /** status of a proposal as this node knows it (coordinator fencing included) */
  proposalStatus: (id: string) => Promise<{ decision: 'commit' | 'abort' | 'pending' | 'unknown' }>
  /** drop our subscription to a member whose publication was re-created (made anew after) */
  resubscribe: (from: string, node: number) => Promise<void>
  /** merge a member's roster of removed nodes, and act on what changed */
  mergeRoster: (entries: cs.RosterEntry[]) => Promise<{ changed: number[] }>
  /** this node and the live nodes it hears (a joining node's view of the cluster) */
  members: () => JoinPeer[]
  /** this node's part of consistency checks */
  check: CheckNode
  /** a member's check result (health reasons and metrics follow it) */
  checkReport: (r: CheckRecord) => void
  /** the commit mode: a cluster call's two rounds */
  commit: CommitMode
  /** copy the cluster's data again on this node (ctl resync) */
  resync: () => Promise<void>
  /** why a request from this peer is refused (a removed node), or undefined */
  refuse?: (from: string, method: string) => { code: string; message: string } | undefined
}

export function rpcHandler(deps: HandlerDeps): RpcHandler {
  const log = deps.log.child({ component: 'rpc' })
  return async (from, req): Promise<RpcResponse> => {
    if (!deps.isMember(from)) {
      log.debug({ from, method: String(req.method).slice(0, 60) }, 'rpc from a non-member')
      return {
        ok: false,
        error: {
          code: 'ERR_NOT_MEMBER',
          message: `peer ${from.slice(0, 60)} is not a member of this cluster (no heartbeat heard from it)`,
        },
      }
    }
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
    const refused = deps.refuse?.(from, method)
    if (refused) return { ok: false, error: refused }
    const parsed = schemas[method].safeParse(req.params ?? {})
    if (!parsed.success) {
      log.warn({ from, method }, 'rpc with bad params')
      return {
        ok: false,
        error: { code: 'ERR_BAD_PARAMS', message: parsed.error.issues[0]?.message ?? 'bad params' },
      }
    }
    try {
      return { ok: true, result: await dispatch(deps, from, method, parsed.data as never) }
    } catch (err) {
      log.warn({ from, method, err: (err as Error).message }, 'rpc failed')
      return { ok: false, error: { code: 'ERR_RPC_HANDLER', message: (err as Error).message } }
    }
  }
}

type Params<M extends Method> = z.infer<(typeof schemas)[M]>

async function dispatch(
  deps: HandlerDeps,
  from: string,
  method: Method,
  raw: unknown,
): Promise<unknown> {
  const { local, steps } = deps
  // raw was parsed by schemas[method] just before
  const p = <M extends Method>(_m: M) => raw as Params<M>
  switch (method) {
    case 'proposal.prepare':
      return await steps.prepare(p(method).proposal)
    case 'proposal.step':
      await steps.run(p(method).proposal, p(method).step, p(method).floors)
      return { done: true }
    case 'sequences.used':
      return await steps.used(p(method).tables)
    case 'proposal.ddl': {
      // the statement comes from this node's own record of the proposal (fenced, voted)
      const rec = await local.cluster.getProposal(p(method).id)
      if (rec?.op !== 'ddl')
        return { ack: false, reason: `no schema change ${p(method).id} recorded here` }
      return await steps.prepareDdl(rec)
    }
    case 'proposal.abort':
      await steps.abort(p(method).id)
      return { aborted: true }
    case 'proposal.status':
      return await deps.proposalStatus(p(method).id)
    case 'replicaset.get':
      return await local.cluster.replicasetSnapshot()
    case 'subscriptions.refresh':
      await local.refreshFrom(p(method).node)
      return { refreshed: true }
    case 'subscriptions.recreate':
      await deps.resubscribe(from, p(method).node)
      return { dropped: true }
    case 'node.status':
      return await deps.nodeStatus()
    case 'history.list':
      return await local.history()
    case 'roster.get':
      return await local.cluster.roster()
    case 'members.list':
      return deps.members()
    case 'node.resync':
      await deps.resync()
      return { copying: true }
    case 'roster.merge':
      return await deps.mergeRoster(p(method).entries)
    case 'check.hashes':
      return await deps.check.hashes(p(method))
    case 'check.rows':
      return await deps.check.rows(p(method))
    case 'check.page':
      return deps.check.page(p(method))
    case 'check.sync':
      return await deps.check.sync(p(method))
    case 'check.images':
      return await deps.check.images(p(method))
    case 'check.tombstones':
      return await deps.check.tombstones(p(method))
    case 'check.repair':
      return await deps.check.repair(p(method))
    case 'commit.check': {
      const reason = await deps.commit.check(p(method).mode)
      return reason === undefined ? { ok: true } : { ok: false, reason }
    }
    case 'commit.set': {
      const { mode, quorum, changed } = p(method).setting
      const adopted = await deps.commit.adopt(
        { mode, ...(quorum === undefined ? {} : { quorum }), changed },
        'a cluster call',
      )
      return { adopted }
    }
    case 'check.report':
      deps.checkReport(p(method))
      return { recorded: true }
  }
}
