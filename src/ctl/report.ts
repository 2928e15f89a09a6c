// What a change or a refusal means for the person at the shell: one line on stdout when it
// worked, the reason per node on stderr when it did not, and the exit code. Pure.

import type {
  CommitBody,
  DdlBody,
  ErrorBody,
  NodeVerdictBody,
  OutcomeBody,
  RosterChangeBody,
} from '../api/present.js'
import { EXIT, type ExitCode } from './errors.js'
import { num, type Reading, read, readList, text, withoutNode } from './format.js'

export interface Report {
  out: string[]
  err: string[]
  exit: ExitCode
}

/** What became of the rows a table held when it joined: copied, merged, or a failed merge. */
function joinedRows(o: Reading<OutcomeBody>, relation: string): { out: string[]; err: string[] } {
  const c = read<NonNullable<OutcomeBody['copied']>>(o.copied)
  const m = read<NonNullable<OutcomeBody['merged']>>(o.merged)
  const out: string[] = []
  const err: string[] = []
  if (o.copied !== undefined)
    out.push(
      `its ${c.rows === undefined ? '' : `${text(c.rows)} `}rows on node ${text(c.from)} copied to the others`,
    )
  if (o.merged !== undefined && m.error !== undefined)
    err.push(
      `${text(m.why)}: merging them failed (${text(m.error)}); see traktor ctl check ${relation}`,
    )
  else if (o.merged !== undefined)
    out.push(
      `${text(m.why)}: merged, ${text(m.repaired_rows)} rows repaired (last writer wins); the table is ${text(m.verdict)}`,
    )
  return { out, err }
}

/** PUT|DELETE /v1/cluster/replicaset/{relation}: committed, unchanged or aborted */
export function reportOutcome(status: number, body: unknown): Report {
  const o = read<OutcomeBody & ErrorBody>(body)
  const relation = text(o.relation)
  const version = text(o.version)
  const nodes = readList<NodeVerdictBody>(o.nodes)
  if (o.outcome === 'committed') {
    const ids = nodes.map((n) => num(n.node)).filter((n) => n !== undefined)
    const what = o.op === 'remove' ? `removal of ${relation}` : relation
    const ms = num(o.duration_ms)
    const err = nodes
      .filter((n) => n.applied === false)
      .map(
        (n) =>
          `node ${text(n.node)}: committed, not applied yet (${text(n.reason)}); it catches up when it can`,
      )
    const on = ids.length > 0 ? ` on nodes ${ids.sort((a, b) => a - b).join(',')}` : ''
    const rows = joinedRows(o, relation)
    return {
      out: [
        `committed ${what} (version ${version})${on}${ms === undefined ? '' : ` in ${ms} ms`}`,
        ...rows.out,
      ],
      err: [...err, ...rows.err],
      exit: EXIT.ok,
    }
  }
  if (o.outcome === 'unchanged') {
    const where = o.op === 'remove' ? 'is not in' : 'is already in'
    return {
      out: [`unchanged: ${relation} ${where} the replicaset (version ${version})`],
      err: [],
      exit: EXIT.ok,
    }
  }
  if (o.outcome === 'aborted') {
    const op = o.op === 'remove' ? 'remove' : 'add'
    const lines = nodes.map((n) =>
      n.ack === true ? `  node ${text(n.node)}: acknowledged` : `  ${refusal(n)}`,
    )
    if (!nodes.some((n) => n.ack !== true) && typeof o.reason === 'string') {
      lines.push(`  ${o.reason}`)
    }
    return {
      out: [],
      err: [
        `aborted: ${op} ${relation}, nothing changed (replicaset stays at version ${version})`,
        ...lines,
      ],
      exit: EXIT.refused,
    }
  }
  return reportRefusal(status, body)
}

function refusal(n: Reading<NodeVerdictBody>): string {
  const why = typeof n.reason === 'string' ? withoutNode(n.node, n.reason) : 'no reason given'
  return `node ${text(n.node)}: refused: ${why}`
}

/** DELETE (or PUT) /v1/cluster/nodes/{id}: which nodes took the change */
export function reportRemoveNode(body: unknown, did = 'removed'): Report {
  const o = read<RosterChangeBody>(body)
  const results = readList<RosterChangeBody['results'][number]>(o.results)
  const done = results.filter((r) => r.ok === true).map((r) => text(r.node))
  const failed = results.filter((r) => r.ok !== true)
  return {
    out: [
      `${did} node ${text(o.node)}${done.length > 0 ? `: done on nodes ${done.join(',')}` : ''}`,
    ],
    err: failed.map((r) => `node ${text(r.node)}: failed: ${withoutNode(r.node, text(r.error))}`),
    exit: failed.length > 0 ? EXIT.refused : EXIT.ok,
  }
}

/** PUT /v1/cluster/commit: committed on every node, unchanged, or aborted with the reason. */
export function reportCommit(status: number, body: unknown): Report {
  const o = read<CommitBody>(body)
  if (o.outcome !== 'committed' && o.outcome !== 'unchanged' && o.outcome !== 'aborted')
    return reportRefusal(status, body)
  const mode =
    o.mode === 'sync' ? `sync (${o.quorum ? `any ${text(o.quorum)}` : 'every live'} peer)` : 'async'
  if (o.outcome === 'aborted')
    return { out: [], err: [`aborted: ${text(o.reason)}`], exit: EXIT.refused }
  if (o.outcome === 'unchanged')
    return { out: [`commit mode already ${mode}`], err: [], exit: EXIT.ok }
  const nodes = readList<CommitBody['nodes'][number]>(o.nodes)
  const failed = nodes.filter((n) => n.ok !== true)
  return {
    out: [
      `commit mode ${mode} on nodes ${nodes
        .filter((n) => n.ok === true)
        .map((n) => text(n.node))
        .join(',')}`,
    ],
    err: failed.map(
      (n) =>
        `node ${text(n.node)}: not told (${text(n.error)}); it adopts the mode from the heartbeats`,
    ),
    exit: EXIT.ok,
  }
}

/** POST /v1/cluster/ddl: committed on every node, or aborted with each node's reason. */
export function reportDdl(status: number, body: unknown): Report {
  const o = read<DdlBody>(body)
  if (o.outcome !== 'committed' && o.outcome !== 'aborted') return reportRefusal(status, body)
  const nodes = readList<NodeVerdictBody>(o.nodes)
  if (o.outcome === 'aborted') {
    const refused = nodes.filter((n) => n.ack !== true)
    return {
      out: [],
      err: [
        'schema change aborted; no node changed:',
        ...(refused.length > 0 ? refused.map((n) => `  ${refusal(n)}`) : [`  ${text(o.reason)}`]),
      ],
      exit: EXIT.refused,
    }
  }
  const ids = nodes
    .map((n) => num(n.node))
    .filter((n) => n !== undefined)
    .sort((a, b) => a - b)
  const tables = readList<string>(o.tables)
  const ms = num(o.duration_ms)
  const out = [
    `committed ${text(o.kind)} (version ${text(o.version)}) on nodes ${ids.join(',')}${ms === undefined ? '' : ` in ${ms} ms`}${tables.length > 0 ? `; fenced ${tables.join(', ')}` : ''}`,
  ]
  for (const a of readList<OutcomeBody>(o.added)) {
    out.push(
      a.outcome === 'committed'
        ? `added ${text(a.relation)} to the replicaset (version ${text(a.version)})`
        : `${text(a.relation)} was created but not added: ${text(a.reason)}`,
    )
  }
  for (const d of readList<string>(o.dropped)) out.push(`dropped ${d}; it left the replicaset`)
  const failed = nodes.filter((n) => n.applied === false)
  return {
    out,
    err: failed.map((n) => `node ${text(n.node)}: committed, not applied yet (${text(n.reason)})`),
    exit: EXIT.ok,
  }
}

/** Any answer that is not a success: the server's code and message. */
export function reportRefusal(status: number, body: unknown): Report {
  const o = read<ErrorBody>(body)
  const code = typeof o.error === 'string' ? ` ${o.error}` : ''
  const message = typeof o.message === 'string' ? o.message : 'no message'
  return { out: [], err: [`refused (${status}${code}): ${message}`], exit: EXIT.refused }
}
