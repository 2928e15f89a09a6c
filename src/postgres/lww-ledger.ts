// The ledger of row-level resolutions (trktr.resolutions, written by trktr.lww_resolve in
// lww.ts): what the history, the API and the metrics read.
import { type Db, prepared } from './db.js'
import { formatRelation, parseRelationName } from './ident.js'

export async function lastResolutionId(db: Db): Promise<number> {
  const [r] = await db.query<{ id: string | null }>(
    `SELECT max(id)::int8 AS id FROM trktr.resolutions`,
  )
  return Number(r?.id ?? 0)
}

export interface Resolution {
  id: number
  at: string
  relation: string
  key: unknown
  kind: string
  action: string
  entries: number
  winner: { node: number | null; ts: string | null; image: unknown }
  loser: { node: number | null; ts: string | null; image: unknown }
}

export async function listResolutions(db: Db, limit = 1000): Promise<Resolution[]> {
  const rows = await db.query<Record<string, unknown>>(
    `SELECT * FROM trktr.resolutions ORDER BY id DESC LIMIT $1`,
    [limit],
  )
  const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : v == null ? null : String(v))
  return rows.map((r) => ({
    id: Number(r.id),
    at: iso(r.at) ?? '',
    relation: formatStored(String(r.relation)),
    key: r.key,
    kind: String(r.kind),
    action: String(r.action),
    entries: Number(r.entries),
    winner: { node: r.winner_node as number | null, ts: iso(r.winner_ts), image: r.winner_image },
    loser: { node: r.loser_node as number | null, ts: iso(r.loser_ts), image: r.loser_image },
  }))
}

/**
 * The regclass text stored in the ledger ("demo.t"; a table of the search path, public, without
 * its schema; quoted as PostgreSQL quotes) as the arbiter writes a table's name elsewhere
 * (`formatRelation`): the check after conflicts looks the name up among the replicated tables.
 */
export function formatStored(rel: string): string {
  for (const text of [rel, `public.${rel}`]) {
    try {
      return formatRelation(parseRelationName(text))
    } catch {
      // one part: a table of the search path
    }
  }
  return rel
}

const SINCE = prepared(
  'resolutions_since',
  `SELECT kind, relation, action, count(*)::int AS n, max(id)::int8 AS last
   FROM trktr.resolutions WHERE id > $1 GROUP BY 1, 2, 3`,
)

/** Resolutions since a given id, counted by kind, relation and action (metrics). */
export async function resolutionsSince(
  db: Db,
  afterId: number,
): Promise<{
  lastId: number
  counts: Array<{ kind: string; relation: string; action: string; n: number }>
}> {
  const rows = await db.query<{
    kind: string
    relation: string
    action: string
    n: number
    last: string
  }>(SINCE, [afterId])
  let lastId = afterId
  for (const r of rows) lastId = Math.max(lastId, Number(r.last))
  return {
    lastId,
    counts: rows.map((r) => ({
      kind: r.kind,
      relation: formatStored(r.relation),
      action: r.action,
      n: r.n,
    })),
  }
}
