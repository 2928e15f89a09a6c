// The answers of /v1/cluster/* and of the JSON-RPC methods: the whole cluster, mesh mode.
import { z } from 'zod'
import { ResolutionFields } from './node.js'
import { nodeId, shape } from './registry.js'

const MemberSubscriptionShape = z.looseObject({
  name: z.string(),
  peer: nodeId,
  enabled: z.boolean(),
  apply_errors: z.number(),
})
export type MemberSubscription = z.infer<typeof MemberSubscriptionShape>

const CommitViewShape = z
  .strictObject({
    mode: z.enum(['async', 'sync']),
    quorum: z.int().nullable().describe('sync: peers a commit waits for (null: every live one)'),
    changed: z.number().describe('when a cluster call set it (ms since the epoch; 0: config file)'),
    standbys: z.array(nodeId).describe('sync: the peers every commit waits for now'),
    outside: z
      .array(nodeId)
      .describe('sync: live peers not waited for (catching up, not streaming)'),
    degraded: z.boolean().describe('sync: fewer peers waited for than the quorum'),
  })
  .describe("the node's commit mode (PUT /v1/cluster/commit)")

const MemberShape = shape(
  'MemberStatus',
  "One member as the cluster status reports it; a reachable member adds its own node status (NodeStatus's fields, its subscriptions), so newer members may add fields",
  z.looseObject({
    node: nodeId,
    reachable: z.boolean(),
    state: z.string().describe('alive, suspect, dead or duplicate'),
    error: z.string().optional().describe('why it did not answer'),
    last_heard_ms_ago: z.number().optional(),
    is_replicating: z.boolean().optional(),
    is_tainted: z.boolean().optional(),
    conflicts_resolved: z.int().optional(),
    conflicts_pending: z.int().optional(),
    replication_lag_ms: z.number().optional(),
    join_state: z.string().optional(),
    replicaset_version: z.number().optional(),
    reasons: z.array(z.string()).optional(),
    subscriptions: z.array(MemberSubscriptionShape).optional(),
    sequences: z
      .array(
        z.looseObject({
          sequence: z.string(),
          column: z.string(),
          type: z.string().describe('smallint, integer or bigint'),
          stride: z.number().describe('its increment: the cluster stride once striped'),
          last_value: z.string().nullable(),
          used_ratio: z.number().describe('share of its range used, 0..1'),
          near_overflow: z.boolean().describe('a smallint or integer sequence past 90%'),
        }),
      )
      .optional()
      .describe("the replicated tables' sequences (sequences: stripe)"),
    commit: CommitViewShape.optional(),
  }),
)

export const ClusterStatusBody = shape(
  'ClusterStatus',
  'Every member, asked in parallel; an unreachable one says so',
  z.strictObject({
    node: nodeId,
    healthy: z.boolean(),
    reasons: z.array(z.string()),
    replicaset_version: z.number(),
    members: z.array(MemberShape),
  }),
)
export type ClusterStatusBody = z.infer<typeof ClusterStatusBody>
export type MemberStatus = z.infer<typeof MemberShape>

const NodeViewShape = shape(
  'NodeView',
  'A member as the asked arbiter sees it, itself first',
  z.strictObject({
    node: nodeId,
    self: z.boolean(),
    peer_id: z.string(),
    state: z.string().describe('alive, suspect, dead or duplicate'),
    last_heard_ms_ago: z.number().optional().describe('absent for the asked arbiter itself'),
    join_state: z
      .string()
      .describe('joining, copying (a new node copying the cluster data), ready or removed'),
    join_error: z.string().optional(),
    join_percent: z.int().min(0).max(100).optional().describe('while copying: how far'),
    join_copy: z
      .strictObject({
        phase: z
          .string()
          .describe(
            "slots (the members' slots made here; local writers not yet fenced), subscribing, waiting, snapshot, copying, enabling or done",
          ),
        donor: nodeId.nullable(),
        attempt: z.int(),
        tables: z.int(),
        tables_done: z.int(),
        rows_copied: z.number(),
        rows_estimated: z.number(),
        last_error: z.string().optional(),
      })
      .optional()
      .describe('the copying node itself: its copy in detail'),
    postgres_reachable: z.boolean(),
    replicaset_version: z.number(),
    postgres: z.string().describe('its PostgreSQL, without a password'),
    version: z.string(),
    flaps: z.int().optional().describe('times it came back after suspect or dead'),
  }),
)

export const NodesBody = shape(
  'Nodes',
  'The members as the asked arbiter sees them',
  z.strictObject({ node: nodeId, nodes: z.array(NodeViewShape) }),
)
export type NodesBody = z.infer<typeof NodesBody>
export type NodeView = z.infer<typeof NodeViewShape>

export const RosterChangeBody = shape(
  'RosterChange',
  'A node removed or re-admitted, and which members took the change',
  z.strictObject({
    node: nodeId,
    results: z.array(
      z.strictObject({ node: nodeId, ok: z.boolean(), error: z.string().optional() }),
    ),
  }),
)
export type RosterChangeBody = z.infer<typeof RosterChangeBody>

export const ResyncBody = shape(
  'Resync',
  'A node copying the cluster data again; GET /v1/cluster/nodes follows its copy',
  z.strictObject({ node: nodeId, join_state: z.literal('copying') }),
)
export type ResyncBody = z.infer<typeof ResyncBody>

export const RpcResyncParams = shape(
  'RpcResyncParams',
  'The node to copy the cluster data again on',
  z.looseObject({ node: nodeId }),
)

export const ClusterReplicasetBody = shape(
  'ClusterReplicaset',
  'The committed replicaset with its version and column signatures',
  z.strictObject({
    node: nodeId,
    version: z.number(),
    replicaset: z.array(
      z.strictObject({
        relation: z.string(),
        status: z.literal('committed'),
        columns: z.array(z.string()).describe('name:type, in column order'),
      }),
    ),
  }),
)
export type ClusterReplicasetBody = z.infer<typeof ClusterReplicasetBody>

const OutcomeFields = {
  outcome: z.enum(['committed', 'aborted', 'unchanged']),
  op: z.enum(['add', 'remove', 'ddl']),
  relation: z.string(),
  version: z.number().describe('the replicaset version after it'),
  proposal: z.string().optional(),
  reason: z.string().optional(),
  copied: z
    .strictObject({
      from: nodeId,
      rows: z.number().optional().describe('absent: too many to count at once'),
    })
    .optional()
    .describe(
      'the table held rows on some nodes only: those of node `from` were copied to the others',
    ),
  merged: z
    .strictObject({
      why: z.string().describe('what each node held'),
      repaired_rows: z.number().optional(),
      verdict: z.string().optional().describe('the check after the merge: consistent, or not'),
      error: z.string().optional().describe('why the merge failed (health shows the difference)'),
    })
    .optional()
    .describe(
      'the table held different rows on two nodes: merged by a repair (every key: the last writer’s row)',
    ),
  nodes: z.array(
    z.strictObject({
      node: nodeId,
      ack: z.boolean(),
      applied: z.boolean().optional().describe('false: committed, applied later'),
      reason: z.string().optional(),
    }),
  ),
  duration_ms: z.number(),
}

export const OutcomeBody = shape(
  'Outcome',
  'A change to the replicaset: every member acknowledged it, or nothing changed',
  z.strictObject(OutcomeFields),
)
export type OutcomeBody = z.infer<typeof OutcomeBody>
export type NodeVerdictBody = OutcomeBody['nodes'][number]

const DdlFields = {
  ...OutcomeFields,
  kind: z
    .enum(['alter-table', 'create-index', 'drop-index', 'create-table', 'drop-table'])
    .describe('the statement kind'),
  sql: z.string().describe('the statement, as given'),
  tables: z
    .array(z.string())
    .describe('the replicated tables it changes: fenced and drained on every node first'),
  created: z.array(z.string()).describe('tables it creates (they join the replicaset)'),
  dropped: z.array(z.string()).describe('replicated tables it drops (they leave the replicaset)'),
  added: z
    .array(z.strictObject(OutcomeFields))
    .describe('for each created table, the proposal that added it to the replicaset'),
}

export const DdlRequest = shape(
  'DdlRequest',
  'A schema change for every node: one statement, and optionally the tables it changes',
  z.strictObject({
    sql: z
      .string()
      .min(1)
      .describe(
        'one ALTER TABLE, CREATE [UNIQUE] INDEX, DROP INDEX, CREATE TABLE or DROP TABLE statement',
      ),
    tables: z
      .array(z.string().min(1).max(300))
      .max(1000)
      .optional()
      .describe('schema.table names to fence besides those the dry run finds'),
  }),
)

export const DdlBody = shape(
  'Ddl',
  'A schema change: committed on every node, or on none',
  z.strictObject(DdlFields),
)
export type DdlBody = z.infer<typeof DdlBody>

export const DdlAbortedBody = shape(
  'DdlAborted',
  'A schema change no node kept: each refusal, and the outcome',
  z.strictObject({ error: z.literal('ERR_ABORTED'), message: z.string(), ...DdlFields }),
)

export const AbortedBody = shape(
  'Aborted',
  'A change nobody applied: the refusals, and the outcome',
  z.strictObject({ error: z.literal('ERR_ABORTED'), message: z.string(), ...OutcomeFields }),
)

export const ClusterHistoryBody = shape(
  'ClusterHistory',
  "Every member's resolutions, newest first",
  z.strictObject({
    node: nodeId,
    resolutions: z.array(
      z.strictObject({
        node: nodeId,
        ...ResolutionFields,
        nodes: z
          .array(nodeId)
          .optional()
          .describe('row-level: every node that recorded this resolution'),
      }),
    ),
  }),
)
export type ClusterHistoryBody = z.infer<typeof ClusterHistoryBody>
export type HistoryRow = ClusterHistoryBody['resolutions'][number]

export const CommitRequest = shape(
  'CommitRequest',
  'The commit mode for every member',
  z.strictObject({
    mode: z.enum(['async', 'sync']),
    quorum: z
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('sync: how many peers a commit waits for (default every live, caught-up one)'),
  }),
)
export type CommitRequest = z.infer<typeof CommitRequest>

export const CommitBody = shape(
  'CommitChange',
  'A commit mode change: committed on every member, unchanged, or aborted on all',
  z.strictObject({
    outcome: z.enum(['committed', 'unchanged', 'aborted']),
    mode: z.enum(['async', 'sync']),
    quorum: z.int().nullable(),
    changed: z.number().describe('the setting members compare (ms since the epoch)'),
    reason: z.string().optional().describe('aborted: why'),
    nodes: z.array(z.strictObject({ node: nodeId, ok: z.boolean(), error: z.string().optional() })),
  }),
)
export type CommitBody = z.infer<typeof CommitBody>
