// `traktor ctl check` and `check --repair`: the answers of GET /v1/cluster/check[/{table}] and
// POST .../repair as a table, a line per differing key, and an exit code that is not 0 while
// rows differ. Pure: JSON in, a report out.
import { EXIT } from './errors.js'
import { duration, list, NONE, num, obj, text, utc } from './format.js'
import { type Report, reportRefusal } from './report.js'
import { renderTable } from './table.js'

/** GET /v1/cluster/check[/{table}] */
export function reportCheck(body: unknown): Report {
  const s = obj(body)
  const tables = list(s.tables)
  const out: string[] = []
  const nodes = [
    ...new Set(tables.flatMap((t) => list(t.nodes).map((n) => num(n.node) ?? -1))),
  ].sort((a, b) => a - b)
  out.push(
    renderTable({
      title: `Check from node ${text(s.node)} at ${utc(s.checked_at)} UTC: ${text(s.verdict)}`,
      headers: [
        'TABLE',
        'VERDICT',
        `ROWS on ${nodes.length > 0 ? `node ${nodes.join('/')}` : 'nodes'}`,
        'DIFFERING',
        'UNSETTLED',
        'TIME',
      ],
      rows: tables.map((t) => {
        const rows = new Map(list(t.nodes).map((n) => [num(n.node), text(n.rows)]))
        const ms = num(t.duration_ms)
        return [
          text(t.relation),
          text(t.verdict),
          nodes.map((n) => rows.get(n) ?? NONE).join('/'),
          text(t.differing_rows),
          text(t.unsettled_rows),
          ms === undefined ? NONE : duration(ms),
        ]
      }),
      align: ['left', 'left', 'right', 'right', 'right', 'right'],
    }),
  )
  for (const t of tables) {
    for (const k of list(t.keys)) out.push(keyLine(text(t.relation), k))
    if (t.keys_truncated === true)
      out.push(
        `${text(t.relation)}: ${text(t.differing_rows)} rows differ, the first ${list(t.keys).length} shown (--json has them)`,
      )
    for (const n of Array.isArray(t.notes) ? t.notes : [])
      out.push(`${text(t.relation)}: ${text(n)}`)
  }
  const bad = tables.some((t) => t.verdict === 'differs' || t.verdict === 'failed')
  return { out: [out.join('\n')], err: [], exit: bad ? EXIT.refused : EXIT.ok }
}

/** demo.t {"id":5}: node 1 absent; nodes 0,2 3f2a.. (2026-...) — the repair takes node 2's */
function keyLine(relation: string, k: Record<string, unknown>): string {
  const groups = new Map<string, number[]>()
  for (const [node, v] of Object.entries(obj(k.nodes))) {
    const version = obj(v)
    const label =
      v === null
        ? 'absent'
        : `${text(version.hash).slice(0, 8)}${typeof version.committed === 'string' ? ` (${utc(version.committed)})` : ''}`
    groups.set(label, [...(groups.get(label) ?? []), Number(node)])
  }
  const parts = [...groups].map(
    ([label, ns]) =>
      `node${ns.length === 1 ? '' : 's'} ${ns.sort((a, b) => a - b).join(',')} ${label}`,
  )
  return `${relation} ${JSON.stringify(k.key)}: ${parts.join('; ')}; a repair takes node ${text(k.winner)}'s`
}

/** POST /v1/cluster/check/{table}/repair: 200 repaired, 409 with what is left */
export function reportRepair(status: number, body: unknown): Report {
  const r = obj(body)
  const after = obj(r.after)
  if (r.after === undefined) return reportRefusal(status, body)
  const ms = num(r.duration_ms)
  const left = num(after.differing_rows) ?? 0
  const out = [
    `repaired ${text(r.repaired_rows)} row${r.repaired_rows === 1 ? '' : 's'} of ${text(r.relation)} (${text(r.rule)}): ${text(r.writes)} write${r.writes === 1 ? '' : 's'} on the nodes${ms === undefined ? '' : ` in ${duration(ms)}`}; now ${text(after.verdict)}`,
  ]
  const err: string[] = []
  for (const f of list(r.failed))
    err.push(
      `${text(r.relation)} ${JSON.stringify(f.key)}: failed on node ${text(f.node)}: ${text(f.error)}`,
    )
  const changed = Array.isArray(r.changed) ? r.changed : []
  if (changed.length > 0)
    err.push(
      `${changed.length === 1 ? '1 row was' : `${changed.length} rows were`} written meanwhile and left alone: ${changed.map((k) => JSON.stringify(k)).join(', ')}`,
    )
  if (left > 0)
    err.push(
      `${left === 1 ? '1 row' : `${left} rows`} of ${text(r.relation)} still ${left === 1 ? 'differs' : 'differ'}`,
    )
  return { out, err, exit: left > 0 ? EXIT.refused : EXIT.ok }
}
