// Cluster DDL (POST /v1/cluster/ddl; README "Changing the schema"). The coordinator reads the
// statement's kind, runs it once in a transaction it rolls back to learn what it touches, then
// proposes it: every member fences the replicated tables it changes and records it, every member
// applies every peer's changes to them (the drain), every node runs and PREPAREs the statement,
// and only when every node prepared it do all commit. A table it creates joins the replicaset
// right after; a replicated table it drops leaves the replicaset inside the same transaction.
import { BadRequestError } from '../errors.js'
import type { Logger } from '../log.js'
import type { DdlEffects, DdlSpec } from '../postgres/ddl.js'
import { type DdlKind, ddlKind } from '../postgres/ddl-statement.js'
import { formatRelation, parseRelationName, type RelationName } from '../postgres/ident.js'
import type { LocalNode } from '../postgres/local.js'
import type { DrainAnswer, NodeVerdict, Outcome, Proposals } from './proposals.js'
import { DDL_LOCK_TIMEOUT_MS, DDL_STATEMENT_TIMEOUT_MS } from './steps.js'

export interface DdlRequest {
  sql: string
  tables?: string[]
}

export interface DdlAnswer extends Outcome {
  kind: DdlKind
  sql: string
  tables: string[]
  created: string[]
  dropped: string[]
  /** per created table, the proposal that added it to the replicaset */
  added: Outcome[]
}

export interface DdlDeps {
  local: LocalNode
  proposals: Proposals
  nodeId: number
  log: Logger
}

const same = (a: RelationName) => (b: RelationName) => a.schema === b.schema && a.table === b.table

export async function runDdl(d: DdlDeps, req: DdlRequest): Promise<DdlAnswer> {
  const started = Date.now()
  const kind = ddlKind(req.sql)
  const declared = (req.tables ?? []).map((t) => parseRelationName(t))
  const replicated = (await d.local.cluster.replicasetSnapshot()).tables
  for (const t of declared) {
    if (!replicated.some(same(t)))
      throw new BadRequestError(
        `tables: ${formatRelation(t)} is not a replicated table (only replicated tables are fenced)`,
      )
  }
  let effects: DdlEffects
  try {
    effects = await d.local.schemaChange.inspectDdl(req.sql, {
      lockTimeoutMs: DDL_LOCK_TIMEOUT_MS,
      statementTimeoutMs: DDL_STATEMENT_TIMEOUT_MS,
    })
  } catch (err) {
    const e = err as Error & { sqlState?: string }
    // 42601: a syntax error, or a second statement (the server refuses it in one statement)
    if (e.sqlState === '42601') throw new BadRequestError(`sql: ${e.message}`)
    const reason = `node ${d.nodeId}: ${e.message}`
    return {
      outcome: 'aborted',
      op: 'ddl',
      relation: '-',
      version: await d.local.cluster.versionBase(),
      nodes: [{ node: d.nodeId, ack: false, reason }],
      reason,
      durationMs: Date.now() - started,
      kind,
      sql: req.sql,
      tables: [],
      created: [],
      dropped: [],
      added: [],
    }
  }
  refuseEffects(effects)
  const fenced = [...effects.replicated]
  for (const t of declared) if (!fenced.some(same(t))) fenced.push(t)
  const spec: DdlSpec = {
    sql: req.sql,
    kind,
    fenced,
    // a new partition is replicated with its partitioned table (the publication publishes
    // through the root), not as a table of its own
    created: effects.created
      .filter((c) => !c.partition)
      .map(({ schema, table }) => ({ schema, table })),
    dropped: effects.dropped,
  }
  const rel = fenced[0] ?? spec.created[0] ?? effects.touched[0] ?? { schema: '-', table: '-' }
  const outcome = await d.proposals.proposeDdl(spec, rel)
  const added: Outcome[] = []
  if (outcome.outcome === 'committed') {
    for (const t of spec.created) added.push(await d.proposals.propose('add', t))
  }
  const notAdded = added.filter((a) => a.outcome === 'aborted')
  d.log.info(
    { proposal: outcome.proposalId, kind, outcome: outcome.outcome, ms: Date.now() - started },
    'cluster schema change',
  )
  return {
    ...outcome,
    ...(notAdded.length > 0
      ? {
          reason: `created on every node, but not added to the replicaset: ${notAdded.map((a) => `${a.relation}: ${a.reason ?? 'aborted'}`).join('; ')} (add it with PUT /v1/cluster/replicaset/...)`,
        }
      : {}),
    durationMs: Date.now() - started,
    kind,
    sql: req.sql,
    tables: fenced.map(formatRelation),
    created: effects.created.map(formatRelation),
    dropped: spec.dropped.map(formatRelation),
    added,
  }
}

/** What the cluster does not do through this call, found by the dry run: a clear 400. */
function refuseEffects(e: DdlEffects): void {
  const [renamed] = e.renamed
  if (renamed)
    throw new BadRequestError(
      `sql: the statement renames replicated table ${formatRelation(renamed.from)} (to ${formatRelation(renamed.to)}): remove it from the replicaset, rename it on every node, add it again`,
    )
  for (const c of e.created) {
    const name = formatRelation(c)
    if (!c.permanent)
      throw new BadRequestError(
        `sql: ${name} would be temporary or unlogged: it cannot be replicated`,
      )
    if (!c.primaryKey)
      throw new BadRequestError(
        `sql: ${name} has no primary key: a replicated table needs one (every node must find a row by its key)`,
      )
    if (c.rows)
      throw new BadRequestError(
        `sql: ${name} would be created with rows (CREATE TABLE ... AS): each node would copy its own; create it empty and fill it through one node`,
      )
  }
}

/** The drain's answers as refusals: a node whose peers did not apply its changes in time. */
export function drainRefusals(
  drained: ReadonlyArray<{ node: number; a: DrainAnswer } | { node: number; err: string }>,
  drainMs: number,
): NodeVerdict[] {
  return drained.flatMap((d): NodeVerdict[] => {
    if ('err' in d)
      return [{ node: d.node, ack: false, reason: `node ${d.node}: drain failed: ${d.err}` }]
    return d.a.behind.map((b) => ({
      node: b.node,
      ack: false,
      reason: b.exists
        ? `node ${b.node} has not applied node ${d.node}'s changes within ${drainMs} ms (slot ${b.slot} confirmed ${b.confirmed ?? 'nothing'})`
        : `node ${b.node} has no slot on node ${d.node}: it does not receive node ${d.node}'s changes`,
    }))
  })
}
