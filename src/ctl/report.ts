// What a change or a refusal means for the person at the shell: one line on stdout when it
// worked, the reason per node on stderr when it did not, and the exit code. Pure.
import { EXIT, type ExitCode } from './errors.js'
import { list, num, obj, text, withoutNode } from './format.js'

export interface Report {
  out: string[]
  err: string[]
  exit: ExitCode
}

/** PUT|DELETE /v1/cluster/replicaset/{relation}: committed, unchanged or aborted */
export function reportOutcome(status: number, body: unknown): Report {
  const o = obj(body)
  const relation = text(o.relation)
  const version = text(o.version)
  const nodes = list(o.nodes)
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
    return {
      out: [`committed ${what} (version ${version})${on}${ms === undefined ? '' : ` in ${ms} ms`}`],
      err,
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

function refusal(n: Record<string, unknown>): string {
  const why = typeof n.reason === 'string' ? withoutNode(n.node, n.reason) : 'no reason given'
  return `node ${text(n.node)}: refused: ${why}`
}

/** DELETE /v1/cluster/nodes/{id}: which nodes forgot it */
export function reportRemoveNode(body: unknown): Report {
  const o = obj(body)
  const results = list(o.results)
  const done = results.filter((r) => r.ok === true).map((r) => text(r.node))
  const failed = results.filter((r) => r.ok !== true)
  return {
    out: [
      `removed node ${text(o.node)}${done.length > 0 ? `: done on nodes ${done.join(',')}` : ''}`,
    ],
    err: failed.map((r) => `node ${text(r.node)}: failed: ${withoutNode(r.node, text(r.error))}`),
    exit: failed.length > 0 ? EXIT.refused : EXIT.ok,
  }
}

/** Any answer that is not a success: the server's code and message. */
export function reportRefusal(status: number, body: unknown): Report {
  const o = obj(body)
  const code = typeof o.error === 'string' ? ` ${o.error}` : ''
  const message = typeof o.message === 'string' ? o.message : 'no message'
  return { out: [], err: [`refused (${status}${code}): ${message}`], exit: EXIT.refused }
}
