// The answers of one node: errors, TRAKTOR's /v1/arbiter/* (with the bodies it takes), the
// public endpoints and the test-only routes.
import { z } from 'zod'
import { nodeId, shape } from './registry.js'

// --- errors ---------------------------------------------------------------------------------

export const ErrorBody = shape(
  'Error',
  'A refusal: a stable code to branch on and a message for a person',
  z.strictObject({
    error: z.string().describe('stable code, e.g. ERR_TABLE_NAME, ERR_NOT_MESH'),
    message: z.string(),
    sql_state: z.string().optional().describe("PostgreSQL's SQLSTATE when the server refused"),
  }),
)
export type ErrorBody = z.infer<typeof ErrorBody>

// --- /v1/arbiter/* (TRAKTOR's, this node only) --------------------------------------------------

export const ControlInitBody = shape(
  'ControlInit',
  'This node initialised (again: repeating it is not an error)',
  z.strictObject({
    node: nodeId,
    initialized: z.literal(true),
    created: z.boolean().describe('the trktr schema was created now'),
    protected: z.boolean().describe('the protection triggers are in place'),
  }),
)

export const ControlTeardownBody = shape(
  'ControlTeardown',
  "traktor's objects removed from this node",
  z.strictObject({
    node: nodeId,
    initialized: z.literal(false),
    slots_left_on_peers: z.array(nodeId).describe('peers that still hold a slot for this node'),
  }),
)

export const SubscribedBody = shape(
  'Subscribed',
  'The subscription to a peer',
  z.strictObject({
    node: nodeId,
    subscription: z.string().describe('trktr_sub_<self>_<inbound_node>'),
    created: z.boolean(),
  }),
)

export const UnsubscribedBody = shape(
  'Unsubscribed',
  'The subscription to a peer dropped',
  z.strictObject({
    node: nodeId,
    subscription: z.string(),
    dropped: z.boolean().describe('false: there was none'),
    slot_left_on_peer: z.boolean(),
  }),
)

export const StagedBody = shape(
  'Staged',
  'A table staged for addition or removal',
  z.strictObject({
    node: nodeId,
    relation: z.string().describe('as given in the path'),
    status: z.string().describe('pending-add, pending-remove, committed or absent'),
  }),
)

const ReplicasetEntryShape = shape(
  'ReplicasetEntry',
  'One table of the replicaset and its state',
  z.strictObject({
    relation: z.string(),
    status: z.enum(['pending-add', 'committed', 'pending-remove']),
  }),
)

export const CommittedBody = shape(
  'Committed',
  'The staged changes committed to the publication',
  z.strictObject({
    node: nodeId,
    added: z.array(z.string()),
    removed: z.array(z.string()),
    replicaset: z.array(ReplicasetEntryShape),
  }),
)

export const ReplicasetStatusBody = shape(
  'ReplicasetStatus',
  "This node's replicaset",
  z.strictObject({ node: nodeId, replicaset: z.array(ReplicasetEntryShape) }),
)

export const NodeStatusBody = shape(
  'NodeStatus',
  "This node's status: TRAKTOR's fields, then why it is not healthy",
  z.strictObject({
    node: nodeId,
    is_replicating: z.boolean(),
    is_tainted: z.boolean(),
    conflicts_resolved: z.int(),
    conflicts_pending: z.int(),
    replication_lag_ms: z.number(),
    server_version: z.number(),
    server_version_num: z.int(),
    healthy: z.boolean(),
    reasons: z.array(z.string()),
  }),
)

const version = z
  .strictObject({
    node: z.number().int().nullable().describe('the node that wrote the version'),
    ts: z.string().nullable().describe('its origin commit timestamp (ISO 8601)'),
    image: z.unknown().describe('the row as JSON (null: the row was deleted)'),
  })
  .describe('one version of a row')
export const ResolutionFields = {
  occurred: z.string().describe('ISO 8601'),
  lsn: z.string(),
  relation: z.string().nullable(),
  sql_state_code: z
    .string()
    .nullable()
    .describe('null for a row-level resolution without an error, and for a repair'),
  resolved: z.string().nullable().describe('when it was really resolved; null: pending'),
  subscription: z
    .string()
    .nullable()
    .describe(
      'the failing subscription (a heal: the lost slot); null for a row-level resolution or a repair',
    ),
  reason: z.string().nullable(),
  key: z.string().nullable().describe('the key, as JSON for row-level resolutions'),
  value: z.string().nullable(),
  kind: z
    .string()
    .describe(
      'conflict | error (a failed remote transaction), a row-level kind: insert_exists, update_exists, update_origin_differs, delete_origin_differs, repair (the consistency check set the row to the winning version), or heal (a peer whose slot here was lost copied the data again)',
    ),
  action: z
    .string()
    .nullable()
    .describe(
      'skip | none for a failed transaction, lww for a row-level resolution, repair for a repair, resync for a heal',
    ),
  resolution: z
    .string()
    .optional()
    .describe(
      'row-level: restored | current wins | delete wins; repair: insert | update | delete (what it did to the row here)',
    ),
  winner: version.optional(),
  loser: version.optional(),
}
export const ResolutionShape = shape(
  'Resolution',
  'A failed remote transaction the resolver saw, and what it did',
  z.strictObject(ResolutionFields),
)

export const ResolutionsBody = shape(
  'Resolutions',
  "This node's resolution history",
  z.strictObject({ node: nodeId, resolutions: z.array(ResolutionShape) }),
)

// requests: documented here, checked by the routes themselves (with TRAKTOR's messages)
const peerId = z
  .union([nodeId, z.string().regex(/^\d{1,10}$/)])
  .describe('the peer node id (a string of digits is taken too)')

export const SubscribeRequest = shape(
  'SubscribeRequest',
  'The peer to subscribe to',
  z.looseObject({
    inbound_node: peerId,
    connection_string: z
      .string()
      .min(1)
      .describe("a libpq connection string to the peer's database"),
  }),
)

export const UnsubscribeRequest = shape(
  'UnsubscribeRequest',
  'The peer whose subscription to drop',
  z.looseObject({ inbound_node: peerId }),
)

// --- public endpoints -----------------------------------------------------------------------

export const HealthBody = shape(
  'Health',
  'Liveness and database reachability; not healthy: the reasons',
  z.looseObject({
    status: z.enum(['ok', 'degraded']),
    node: nodeId.optional(),
    postgres: z.string().optional().describe('"reachable", or why not'),
    mode: z.enum(['mesh', 'standalone']).optional(),
    join_state: z.string().optional(),
    reasons: z.array(z.string()).optional(),
    error: z.string().optional(),
  }),
)

// --- test-only routes (config "testing": {"routes": true}) -----------------------------------

export const PartitionRequest = shape(
  'PartitionRequest',
  'The nodes to cut the mesh to',
  z.looseObject({ nodes: z.array(z.int()) }),
)

export const PartitionedBody = shape(
  'Partitioned',
  'The mesh is cut to these nodes',
  z.strictObject({ partitioned: z.array(z.int()), peers: z.array(z.string()) }),
)

export const HealedBody = shape(
  'Healed',
  'Every cut healed',
  z.strictObject({ healed: z.literal(true) }),
)
