// What the routes read from a request the same way for REST and JSON-RPC alike (a route imports
// no other route): the table a check names, and the source node of a repair.
import { BadRequestError } from '../errors.js'
import { formatRelation, parseRelationName } from '../postgres/ident.js'
import { CommitRequest, DdlRequest } from './shapes/cluster.js'

/** "schema.table" as the replicaset spells it (unquoted where it can be). */
export function relationOf(input: string): string {
  return formatRelation(parseRelationName(input))
}

/** The source node of a repair: ?from=N or {"from": N}; undefined for "the last writer". */
export function repairSource(query: unknown, body: unknown): number | undefined {
  const fromBody =
    typeof body === 'object' && body !== null && !Array.isArray(body)
      ? (body as { from?: unknown }).from
      : undefined
  if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body)))
    throw new BadRequestError('body: expected a JSON object, e.g. {"from": 2}, or none')
  const v = query ?? fromBody
  if (v === undefined || v === null) return undefined
  const n = typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 2_147_483_647)
    throw new BadRequestError('from: a node id (integer >= 0)')
  return n
}

/** The body of PUT /v1/cluster/commit (and cluster.commit's params), or a clear 400. */
export function commitRequest(body: unknown): { mode: 'async' | 'sync'; quorum?: number } {
  const r = CommitRequest.safeParse(body)
  if (!r.success) {
    const i = r.error.issues[0]
    const where = i?.path.length ? `${i.path.join('.')}: ` : ''
    throw new BadRequestError(
      `${where}${i?.message ?? 'bad body'} (expected {"mode": "sync" | "async", "quorum"?: 1..1000})`,
    )
  }
  return {
    mode: r.data.mode,
    ...(r.data.quorum === undefined ? {} : { quorum: r.data.quorum }),
  }
}

/** The body of POST /v1/cluster/ddl (and cluster.ddl's params), or a clear 400. */
export function ddlRequest(body: unknown): { sql: string; tables?: string[] } {
  const r = DdlRequest.safeParse(body)
  if (!r.success) {
    const i = r.error.issues[0]
    const where = i?.path.length ? `${i.path.join('.')}: ` : ''
    throw new BadRequestError(
      `${where}${i?.message ?? 'bad body'} (expected {"sql": "one statement", "tables"?: ["schema.table", ...]})`,
    )
  }
  return { sql: r.data.sql, ...(r.data.tables ? { tables: r.data.tables } : {}) }
}
