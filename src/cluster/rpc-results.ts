// The answers of the mesh RPC methods whose results a caller reads, as schemas: a caller reads
// a member's answer only through `answerOf`, which checks it first, so a member that answers
// in another shape (another version, a bug, a forged frame) is an error naming the method,
// never a wrong value read on. The params of every method are checked on the answering side
// (rpc-handlers.ts).
import { z } from 'zod'
import { TraktorError } from '../errors.js'
import type { RpcResponse } from '../mesh/types.js'

const vote = z.object({
  ack: z.boolean(),
  reason: z.string().max(10_000).optional(),
  content: z.object({ rows: z.int().min(0).nullable(), hash: z.string().max(32) }).optional(),
})
const decimal = z.string().regex(/^-?\d{1,20}$/)

// the consistency check's answers (check-node.ts): keys and row hashes as text, paged
const MANY = 1_000_000
const checkKey = z.string().max(100_000)
const next = z.string().min(1).max(200).optional()
const hashPage = z.object({
  buckets: z.array(z.int().min(0)).max(MANY),
  counts: z.array(z.int().min(0)).max(MANY),
  hashes: z.array(z.string().max(64)).max(MANY),
  next,
})
const rowPage = z.object({
  rows: z
    .array(
      z.object({
        k: checkKey,
        h: z.string().max(64),
        ts: z.string().max(40).nullable(),
        origin: z.int().min(0).nullable(),
      }),
    )
    .max(MANY),
  next,
})

export const RESULTS = {
  'proposal.prepare': vote,
  'proposal.ddl': vote,
  'proposal.status': z.object({ decision: z.enum(['commit', 'abort', 'pending', 'unknown']) }),
  'replicaset.get': z.object({
    version: z.int().min(0),
    tables: z
      .array(
        z.object({
          relation: z.string().max(300),
          schema: z.string().min(1).max(63),
          table: z.string().min(1).max(63),
          columns: z.array(z.string().max(300)).max(1600),
        }),
      )
      .max(100_000),
  }),
  'sequences.used': z
    .array(
      z.object({
        schema: z.string().max(63),
        table: z.string().max(63),
        column: z.string().max(63),
        used: decimal.nullable(),
        increment: decimal,
      }),
    )
    .max(100_000),
  'check.sync': z.object({
    reached: z.boolean(),
    behind: z
      .array(
        z.object({
          node: z.int().min(0),
          slot: z.string().max(200),
          confirmed: z.string().max(40).nullable(),
          exists: z.boolean(),
        }),
      )
      .max(10_000),
  }),
  'check.hashes': hashPage.extend({ rows: z.int().min(0), commitTs: z.boolean() }),
  'check.rows': rowPage,
  /** the next page of a check.hashes or check.rows answer, in that answer's shape */
  'check.page.hashes': hashPage,
  'check.page.rows': rowPage,
  'check.tombstones': z.object({
    tombstones: z
      .array(
        z.object({
          k: checkKey,
          ts: z.string().regex(/^-?\d{1,20}$/),
          origin: z.int().min(0),
        }),
      )
      .max(MANY),
  }),
  'check.images': z.object({
    images: z
      .array(
        z.object({
          k: checkKey,
          row: z.string(),
          h: z.string().max(64),
          ts: z.string().max(40).nullable(),
        }),
      )
      .max(MANY),
    tooLarge: z.array(checkKey).max(MANY),
    more: z.array(checkKey).max(MANY),
  }),
  'check.repair': z.object({
    results: z
      .array(
        z.object({
          k: checkKey,
          outcome: z.enum(['repaired', 'unchanged', 'changed', 'failed']),
          action: z.enum(['insert', 'update', 'delete', 'none']),
          error: z.string().max(10_000).optional(),
        }),
      )
      .max(MANY),
  }),
  'members.list': z
    .array(
      z.object({
        nodeId: z.int().min(0),
        joinState: z.string().max(20),
        postgresUp: z.boolean(),
      }),
    )
    .max(10_000),
  'commit.check': z.object({ reason: z.string().max(10_000).optional() }).loose(),
  // the fields the cluster's merge reads are checked; the rest of each row is passed through
  'history.list': z
    .array(
      z
        .object({
          occurred: z.string(),
          kind: z.string(),
          action: z.string().nullable(),
          relation: z.string().nullable(),
          key: z.string().nullable(),
        })
        .loose(),
    )
    .max(1_000_000),
  'node.status': z.object({}).loose(),
} as const

export type ResultMethod = keyof typeof RESULTS

/** the method asked on the wire for an answer shape named apart from it */
export function wireMethod(m: ResultMethod): string {
  return m.startsWith('check.page.') ? 'check.page' : m
}
export type ResultOf<M extends ResultMethod> = z.infer<(typeof RESULTS)[M]>

/** A member's answer, checked against its method's schema. */
export function answerOf<M extends ResultMethod>(
  method: M,
  r: RpcResponse | { ok: false; error: { message: string } },
): { ok: true; result: ResultOf<M> } | { ok: false; error: string } {
  if (!r.ok) return { ok: false, error: r.error.message }
  const parsed = RESULTS[method].safeParse(r.result)
  if (!parsed.success) {
    const first = parsed.error.issues[0]
    const where = first?.path.length ? ` at ${first.path.join('.')}` : ''
    return {
      ok: false,
      error: `a malformed answer to ${method}${where}: ${first?.message ?? 'invalid'}`,
    }
  }
  return { ok: true, result: parsed.data as ResultOf<M> }
}

/**
 * A member's result already taken out of its response (the check's port throws on an error
 * response): checked against the method's schema; a malformed one throws, naming the method.
 */
export function resultOf<M extends ResultMethod>(method: M, result: unknown): ResultOf<M> {
  const a = answerOf(method, { ok: true, result })
  if (!a.ok) throw new TraktorError('ERR_RPC_ANSWER', a.error)
  return a.result
}
