// The one presenter: every answer the API gives, REST and JSON-RPC alike, is built here from
// what the node or the cluster reports, in the shape src/api/shapes/ declares under the name
// the OpenAPI document gives it (`satisfies` keeps each builder to its shape). `traktor ctl`
// reads the same shapes: it imports the types below, never this module's code. The shapes
// describe; they never rewrite an answer (the server serialises with JSON.stringify), and a
// test checks real answers against them.
import type { z } from 'zod'
import type { CheckAnswer, RepairAnswer } from '../cluster/checker.js'
import type { DdlAnswer } from '../cluster/ddl.js'
import type { Outcome } from '../cluster/proposals.js'
import type { ReplicasetSnapshot } from '../postgres/cluster-state.js'
import type { HistoryEntry } from '../postgres/history.js'
import type { NodeStatus } from '../postgres/local.js'
import type { CommitResult, ReplicasetEntry } from '../postgres/replicaset.js'
import type {
  AbortedBody,
  CheckBody,
  ClusterHistoryBody,
  ClusterReplicasetBody,
  ClusterStatusBody,
  CommittedBody,
  ControlInitBody,
  ControlTeardownBody,
  DdlAbortedBody,
  DdlBody,
  HealedBody,
  NodeStatusBody,
  NodesBody,
  NodeView,
  OutcomeBody,
  PartitionedBody,
  RepairBody,
  RepairIncompleteBody,
  ReplicasetStatusBody,
  ResolutionShape,
  ResolutionsBody,
  RosterChangeBody,
  RpcError,
  StagedBody,
  SubscribedBody,
  UnsubscribedBody,
} from './shapes/index.js'

/** What ctl reads: the shapes' types. */
export type {
  CheckBody,
  ClusterHistoryBody,
  ClusterReplicasetBody,
  ClusterStatusBody,
  CommitBody,
  DdlBody,
  ErrorBody,
  HistoryRow,
  MemberStatus,
  MemberSubscription,
  NodesBody,
  NodeVerdictBody,
  NodeView,
  OutcomeBody,
  RepairBody,
  RosterChangeBody,
  RpcError,
} from './shapes/index.js'

type Out<T extends z.ZodType> = z.infer<T>

/** One trktr.history row as the API answers it: TRAKTOR's fields first, then ours. */
export function resolutionRow(h: HistoryEntry): Out<typeof ResolutionShape> {
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
    ...(h.resolution === undefined ? {} : { resolution: h.resolution }),
    ...(h.winner === undefined ? {} : { winner: h.winner }),
    ...(h.loser === undefined ? {} : { loser: h.loser }),
  }
}

export const present = {
  controlInit: (node: number, r: { created: boolean; protected: boolean }) =>
    ({
      node,
      initialized: true,
      created: r.created,
      protected: r.protected,
    }) satisfies Out<typeof ControlInitBody>,
  controlTeardown: (node: number, r: { slotsLeft: number[] }) =>
    ({
      node,
      initialized: false,
      slots_left_on_peers: r.slotsLeft,
    }) satisfies Out<typeof ControlTeardownBody>,
  subscribed: (node: number, peer: number, r: { created: boolean }) =>
    ({
      node,
      subscription: subscriptionName(node, peer),
      created: r.created,
    }) satisfies Out<typeof SubscribedBody>,
  unsubscribed: (node: number, peer: number, r: { existed: boolean; slotLeft: boolean }) =>
    ({
      node,
      subscription: subscriptionName(node, peer),
      dropped: r.existed,
      slot_left_on_peer: r.slotLeft,
    }) satisfies Out<typeof UnsubscribedBody>,
  staged: (node: number, relation: string, status: string) =>
    ({ node, relation, status }) satisfies Out<typeof StagedBody>,
  committed: (node: number, r: CommitResult, replicaset: ReplicasetEntry[]) =>
    ({
      node,
      added: r.added,
      removed: r.removed,
      replicaset,
    }) satisfies Out<typeof CommittedBody>,
  replicasetStatus: (node: number, replicaset: ReplicasetEntry[]) =>
    ({ node, replicaset }) satisfies Out<typeof ReplicasetStatusBody>,
  nodeStatus: (status: NodeStatus, reasons: string[]) =>
    ({
      ...status,
      healthy: reasons.length === 0,
      reasons,
    }) satisfies Out<typeof NodeStatusBody>,
  resolutions: (node: number, history: HistoryEntry[]) =>
    ({
      node,
      resolutions: history.map(resolutionRow),
    }) satisfies Out<typeof ResolutionsBody>,

  /** The cluster's own report, already in the API's words (it is also the mesh's node.status). */
  clusterStatus: (s: Record<string, unknown>) => s as ClusterStatusBody,
  nodes: (node: number, nodes: Array<Record<string, unknown>>) =>
    ({ node, nodes: nodes as NodeView[] }) satisfies NodesBody,
  rosterChange: (r: RosterChangeBody): RosterChangeBody => r,
  /** The replicaset as both /v1/cluster/replicaset and replicaset.list answer it. */
  clusterReplicaset: (node: number, snap: ReplicasetSnapshot) =>
    ({
      node,
      version: snap.version,
      replicaset: snap.tables.map((t) => ({
        relation: t.relation,
        status: 'committed' as const,
        columns: t.columns,
      })),
    }) satisfies ClusterReplicasetBody,
  /** One outcome as both REST and replicaset.add/remove answer it. */
  outcome: outcomeBody,
  aborted: (o: Outcome) =>
    ({
      error: 'ERR_ABORTED' as const,
      message: abortMessage(o),
      ...outcomeBody(o),
    }) satisfies Out<typeof AbortedBody>,
  /** A schema change as both POST /v1/cluster/ddl and cluster.ddl answer it. */
  ddl: (d: DdlAnswer) =>
    ({
      ...outcomeBody(d),
      kind: d.kind,
      sql: d.sql,
      tables: d.tables,
      created: d.created,
      dropped: d.dropped,
      added: d.added.map(outcomeBody),
    }) satisfies DdlBody,
  ddlAborted: (d: DdlAnswer) =>
    ({
      error: 'ERR_ABORTED' as const,
      message: ddlAbortMessage(d),
      ...present.ddl(d),
    }) satisfies Out<typeof DdlAbortedBody>,
  /** Every node's resolutions as both /v1/cluster/history and history.list answer them. */
  clusterHistory: (
    node: number,
    history: Array<HistoryEntry & { node: number; nodes?: number[] }>,
  ) =>
    ({
      node,
      resolutions: history.map((h) => ({
        node: h.node,
        ...resolutionRow(h),
        ...(h.nodes ? { nodes: h.nodes } : {}),
      })),
    }) satisfies ClusterHistoryBody,

  /** A check as both GET /v1/cluster/check[/{table}] and cluster.check answer it. */
  check: (a: CheckAnswer) => a satisfies CheckBody,
  /** A repair as both POST .../repair and cluster.repair answer it. */
  repair: (r: RepairAnswer) => r satisfies RepairBody,
  /** Rows still differ after the repair: the refusal, with what the repair did. */
  repairIncomplete: (r: RepairAnswer) =>
    ({
      error: 'ERR_REPAIR_INCOMPLETE' as const,
      message: repairIncompleteMessage(r),
      ...r,
    }) satisfies Out<typeof RepairIncompleteBody>,

  partitioned: (nodes: number[], peers: string[]) =>
    ({ partitioned: nodes, peers }) satisfies Out<typeof PartitionedBody>,
  healed: () => ({ healed: true as const }) satisfies Out<typeof HealedBody>,

  rpcResult: (id: unknown, result: unknown) => ({ jsonrpc: '2.0' as const, id, result }),
  rpcError: (id: string | number | null, error: RpcError) => ({
    jsonrpc: '2.0' as const,
    id,
    error,
  }),
}

function outcomeBody(o: Outcome): OutcomeBody {
  return {
    outcome: o.outcome,
    op: o.op,
    relation: o.relation,
    version: o.version,
    ...(o.proposalId ? { proposal: o.proposalId } : {}),
    ...(o.reason ? { reason: o.reason } : {}),
    ...(o.copied ? { copied: o.copied } : {}),
    ...(o.merged ? { merged: o.merged } : {}),
    nodes: o.nodes,
    duration_ms: o.durationMs,
  }
}

/** Why a schema change was aborted, every refusal named. */
export function ddlAbortMessage(d: DdlAnswer): string {
  const why = d.nodes.filter((n) => !n.ack).map((n) => n.reason ?? `node ${n.node} refused`)
  return `schema change aborted on every node: ${why.join('; ') || d.reason || 'refused'}`
}

/** Why a change was aborted, every refusal named. */
export function abortMessage(o: Outcome): string {
  const why = o.nodes.filter((n) => !n.ack).map((n) => n.reason ?? `node ${n.node} refused`)
  return `${o.op} ${o.relation} aborted: ${why.join('; ') || o.reason || 'refused'}`
}

function subscriptionName(node: number, peer: number): string {
  return `trktr_sub_${node}_${peer}`
}

export function repairIncompleteMessage(r: RepairAnswer): string {
  return `${r.after.differing_rows} rows of ${r.relation} still differ after the repair`
}

/** A repair: 200 when no settled difference is left, 409 when some could not be repaired. */
export function repairStatus(r: RepairAnswer): number {
  return r.after.verdict === 'differs' ? 409 : 200
}

/** The status code of a change's answer: 201 for a committed add, 409 aborted, else 200. */
export function outcomeStatus(o: Outcome): number {
  if (o.outcome === 'aborted') return 409
  return o.outcome === 'committed' && o.op === 'add' ? 201 : 200
}
