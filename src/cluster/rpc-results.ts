// The answers of the mesh RPC methods whose results a caller reads, as schemas: a caller reads
// a member's answer only through `answerOf`, which checks it first, so a member that answers
// in another shape (another version, a bug, a forged frame) is an error naming the method,
// never a wrong value read on. The params of every method are checked on the answering side
// (rpc-handlers.ts).
import { z } from 'zod'
import type { RpcResponse } from '../mesh/types.js'

const vote = z.object({ ack: z.boolean(), reason: z.string().max(10_000).optional() })
const decimal = z.string().regex(/^-?\d{1,20}$/)

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
