// The answers of the consistency check and repair (issue 11): GET /v1/cluster/check[/{table}],
// POST /v1/cluster/check/{table}/repair, and the JSON-RPC methods cluster.check and
// cluster.repair, which answer the same shapes.
import { z } from 'zod'
import { nodeId, shape } from './registry.js'

const verdict = z
  .enum(['consistent', 'differs', 'unsettled', 'failed'])
  .describe(
    'consistent: no difference; differs: settled differences; unsettled: only moving ones; failed: a member could not answer (notes)',
  )

const RowVersionShape = z
  .strictObject({
    hash: z.string().describe("the row's 64-bit hash, hex"),
    committed: z
      .string()
      .nullable()
      .describe('origin commit time, ISO 8601 with microseconds (null: unknown)'),
    origin: nodeId.nullable().describe('the node that wrote this version, if known'),
  })
  .describe("one node's version of a row")

const KeyReportShape = shape(
  'CheckKey',
  'A differing key: its values, what each node holds, and whose version wins',
  z.strictObject({
    key: z.unknown().describe('the primary key as its values ({"id": 5})'),
    nodes: z
      .record(z.string(), RowVersionShape.nullable())
      .describe('node id → its version; null: the row is absent on that node'),
    winner: nodeId.describe(
      'the node whose version a repair would write (a DELETE that wins: the node that deleted)',
    ),
    rule: z
      .string()
      .optional()
      .describe('how the tombstones decided a key some nodes lack, as the repair will'),
  }),
)

export const TableCheckShape = shape(
  'TableCheck',
  'One table compared on every member',
  z.strictObject({
    relation: z.string(),
    verdict,
    nodes: z.array(z.strictObject({ node: nodeId, rows: z.int().min(0) })),
    differing_rows: z.int().min(0),
    keys: z.array(KeyReportShape).describe('the first 100 differing keys'),
    keys_truncated: z.boolean(),
    unsettled_rows: z.int().min(0).describe('rows still moving after every round'),
    partial: z
      .boolean()
      .describe('so many buckets differed that only part were narrowed: more keys may differ'),
    rounds: z.int().min(0),
    duration_ms: z.number(),
    checked_at: z.string().describe('ISO 8601'),
    coordinator: nodeId,
    check_id: z.string(),
    notes: z.array(z.string()).describe('members left out, rows behind a sync point, failures'),
  }),
)

export const CheckBody = shape(
  'Check',
  'The replicated tables (or one) compared on every member',
  z.strictObject({
    node: nodeId,
    verdict,
    differing_rows: z.int().min(0),
    duration_ms: z.number(),
    checked_at: z.string().describe('ISO 8601'),
    tables: z.array(TableCheckShape),
  }),
)
export type CheckBody = z.infer<typeof CheckBody>

const RepairFields = {
  node: nodeId,
  relation: z.string(),
  rule: z.string().describe('"last writer", or "from node N"'),
  from: nodeId.optional().describe('the source node, when one was named'),
  repaired_rows: z.int().min(0),
  writes: z.int().min(0).describe('rows written, on every node'),
  changed: z
    .array(z.unknown())
    .describe('keys written by someone else since the check: left alone, for a later check'),
  failed: z.array(
    z.strictObject({ key: z.unknown(), node: nodeId, error: z.string().describe('with SQLSTATE') }),
  ),
  passes: z.int().min(0),
  duration_ms: z.number(),
  before: TableCheckShape,
  after: TableCheckShape,
}

export const RepairBody = shape(
  'Repair',
  "Every settled difference set to the winning version; the check before and after (for the JSON-RPC cluster.repair also an error's data when rows still differ)",
  z.strictObject(RepairFields),
)
export type RepairBody = z.infer<typeof RepairBody>

export const RepairIncompleteBody = shape(
  'RepairIncomplete',
  'Rows still differ after the repair: ERR_REPAIR_INCOMPLETE, and what the repair did',
  z.strictObject({
    error: z.literal('ERR_REPAIR_INCOMPLETE'),
    message: z.string(),
    ...RepairFields,
  }),
)

export const RepairRequest = shape(
  'RepairRequest',
  'The source of a repair (or ?from=NODE); none: the last writer wins',
  z.looseObject({
    from: z
      .union([nodeId, z.string().regex(/^\d{1,10}$/)])
      .optional()
      .describe("take this node's version of every differing row"),
  }),
)

export const RpcCheckParams = shape(
  'RpcCheckParams',
  'The table to check; none (or {}): every replicated table',
  z.looseObject({ table: z.string().optional().describe('schema.table') }),
)

export const RpcRepairParams = shape(
  'RpcRepairParams',
  'The table to repair, and optionally the source node',
  z.looseObject({
    table: z.string().describe('schema.table ("quoted" parts keep their case)'),
    from: nodeId.optional().describe("take this node's version of every differing row"),
  }),
)
