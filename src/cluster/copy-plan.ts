// A table joining the replicaset may hold rows already (written before it was replicated).
// Where the nodes that hold rows all hold the same rows, every node where the table is empty
// gets a copy of them, behind the write fence and before the table is published (the copy
// step): exact, and as fast as COPY. Where two nodes hold different rows (each wrote its own),
// the table joins as it is and is then merged by a repair (Cluster.propose): every key's last
// writer's row on every node, as if the table had been replicated from the start.
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import { copyTable, type TableContent } from '../postgres/join-copy.js'
import type { LocalNode } from '../postgres/local.js'
import type { RepairAnswer } from './check-types.js'
import type { Outcome } from './proposals.js'

/** a joining table's rows are hashed at its prepare at most this long (1M rows: ~2 s) */
const CONTENT_HASH_MS = 3000

/**
 * What a node holds of a joining table, told in its vote: rows and hash; rows null when there
 * are too many to hash in time (the prepare is on the path of every change); or why not.
 */
export async function contentVote(
  local: LocalNode,
  rel: RelationName,
  ms = CONTENT_HASH_MS,
): Promise<{ content: TableContent } | { reason: string }> {
  try {
    return { content: await local.joinCopy.tableContent(rel, ms) }
  } catch (err) {
    if ((err as { sqlState?: string }).sqlState === '57014')
      return { content: { rows: null, hash: '' } }
    return { reason: `cannot read ${formatRelation(rel)}: ${(err as Error).message}` }
  }
}

/** The node whose rows every empty node copies, with what they must match afterwards. */
export interface CopySource extends TableContent {
  node: number
}

export interface CopyPlan {
  copy?: CopySource
  /** different rows on two nodes: merged by a repair once the table joined */
  merge?: string
  /** nodes that did not say what they hold (too big to hash in time, another version) */
  untold?: number[]
}

export function copyPlan(
  relation: string,
  votes: ReadonlyArray<{ node: number; content?: TableContent | undefined }>,
): CopyPlan {
  // a node that did not say: nothing to compare, nothing copied (the table is checked later)
  const untold = votes.filter((v) => v.content === undefined).map((v) => v.node)
  if (untold.length > 0) return { untold: untold.sort((a, b) => a - b) }
  const byNode = [...votes].sort((a, b) => a.node - b.node)
  const holders = byNode.filter((v) => v.content?.rows !== 0)
  const [first] = holders
  if (!first?.content) return {}
  const unhashed = holders.filter((v) => v.content?.rows === null).map((v) => v.node)
  if (unhashed.length > 0) {
    // too many rows to hash at once: copied (unverified) when every other node is empty,
    // otherwise not compared (the table is checked once it joined)
    if (holders.length === 1 && votes.length > 1)
      return { copy: { node: first.node, rows: null, hash: '' } }
    return { untold: unhashed }
  }
  const same = (c?: TableContent) =>
    c?.rows === first.content?.rows && c?.hash === first.content?.hash
  if (!holders.every((v) => same(v.content))) {
    const each = byNode
      .map((v) => `node ${v.node}: ${v.content?.rows ? `${v.content.rows} rows` : 'empty'}`)
      .join(', ')
    return { merge: `${relation} holds different rows on different nodes (${each})` }
  }
  if (holders.length === votes.length) return {}
  return { copy: { node: first.node, rows: first.content.rows, hash: first.content.hash } }
}

/**
 * The copy step where the table is empty: its rows copied from the source node as a join
 * copies them (origin-tagged, no ordinary trigger fires), then compared with the source's.
 * Idempotent: a node that holds the source's rows already copies nothing.
 */
export async function copyRows(
  init: {
    local: LocalNode
    nodeId: number
    log: Logger
    peerPostgres?: ((node: number) => string | undefined) | undefined
  },
  p: cs.Proposal,
  from: CopySource,
): Promise<void> {
  const { local } = init
  const rel = { schema: p.schema, table: p.table }
  const name = formatRelation(rel)
  const same = (c: TableContent) => c.rows === from.rows && c.hash === from.hash
  if (from.rows === null) {
    // rows too many to hash: a node that holds rows copied them already (a re-drive)
    if (await local.joinCopy.hasRows(rel)) return
  } else {
    const here = await local.joinCopy.tableContent(rel)
    if (same(here)) return
    if (here.rows !== 0)
      throw new Error(`${name} holds other rows here than on node ${from.node}: not copied over`)
  }
  const postgres = init.peerPostgres?.(from.node)
  if (postgres === undefined) throw new Error(`node ${from.node} is not a member here`)
  if (!(await local.joinCopy.canSetReplicaRole()))
    throw new Error(
      'the arbiter role may not set session_replication_role: it cannot copy rows (GRANT SET ON PARAMETER session_replication_role)',
    )
  const started = Date.now()
  const r = await copyTable({
    donorConninfo: local.peerConninfo(postgres),
    localConninfo: local.conninfo,
    appName: `traktor-${init.nodeId}-add`,
    rel,
    columns: await local.joinCopy.copyColumns(rel),
    origin: 'trktr_add',
    clear: true,
  })
  const after = from.rows === null ? undefined : await local.joinCopy.tableContent(rel)
  if (after && !same(after))
    throw new Error(
      `${name} copied from node ${from.node} differs from it (${after.rows} rows here, ${from.rows} there)`,
    )
  init.log.info(
    { proposal: p.id, relation: name, from: from.node, rows: r.rows, ms: Date.now() - started },
    'copied the rows of a joining table',
  )
}

/**
 * After a table joined (the coordinator): merge it at once if it joined holding different rows
 * on two nodes, check it soon if not every node said what it holds.
 */
export async function settleJoined(
  o: Outcome,
  d: {
    log: Logger
    checkSoon: (relation: string) => void
    repair?: (relation: string) => Promise<RepairAnswer>
  },
): Promise<Outcome> {
  if (o.untold) {
    d.log.info({ relation: o.relation, nodes: o.untold }, 'table joined unhashed: checking it')
    d.checkSoon(o.relation)
  }
  if (!o.merge || !d.repair) return o
  d.log.warn({ relation: o.relation, why: o.merge }, 'table joined with different rows: merging')
  try {
    const r = await d.repair(o.relation)
    const merged = { why: o.merge, repaired_rows: r.repaired_rows, verdict: r.after.verdict }
    d.log.info({ relation: o.relation, ...merged }, 'table joined with different rows: merged')
    return { ...o, merged }
  } catch (err) {
    const error = (err as Error).message
    d.log.error(
      { relation: o.relation, err: error },
      'table joined with different rows: merge failed',
    )
    return { ...o, merged: { why: o.merge, error } }
  }
}
