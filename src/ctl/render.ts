// The read commands' answers as tables (status, nodes, replicaset list, history). Pure: JSON
// in, text out; lines that need attention (an unreachable member, a disabled subscription, a
// join error) follow the table.
import type {
  ClusterHistoryBody,
  ClusterReplicasetBody,
  ClusterStatusBody,
  HistoryRow,
  MemberStatus,
  MemberSubscription,
  NodesBody,
  NodeView,
} from '../api/present.js'
import {
  ago,
  duration,
  NONE,
  num,
  read,
  readList,
  shortConninfo,
  text,
  utc,
  yesNo,
} from './format.js'
import { renderTable } from './table.js'

const byNodeId = (a: { node?: unknown }, b: { node?: unknown }) =>
  (num(a.node) ?? 0) - (num(b.node) ?? 0)

/** GET /v1/cluster/status */
export function renderStatus(body: unknown): string {
  const s = read<ClusterStatusBody>(body)
  const members = readList<MemberStatus>(s.members).sort(byNodeId)
  const notes: string[] = []
  const rows = members.map((m) => {
    const node = text(m.node)
    if (m.reachable === false) {
      notes.push(`node ${node}: no answer${typeof m.error === 'string' ? ` (${m.error})` : ''}`)
      return [node, text(m.state), NONE, NONE, NONE, NONE, NONE, NONE]
    }
    if (typeof m.join_state === 'string' && m.join_state !== 'ready') {
      notes.push(`node ${node}: ${m.join_state}`)
    }
    const subs = readList<MemberSubscription>(m.subscriptions)
    for (const sub of subs.filter((x) => x.enabled === false)) {
      const errors = num(sub.apply_errors)
      notes.push(
        `node ${node}: subscription ${text(sub.name)} is disabled` +
          (errors ? ` (${errors} apply error${errors === 1 ? '' : 's'})` : ''),
      )
    }
    for (const q of readList<{
      sequence?: unknown
      type?: unknown
      used_ratio?: unknown
      near_overflow?: unknown
    }>(m.sequences)) {
      if (q.near_overflow !== true) continue
      const pct = Math.round((num(q.used_ratio) ?? 0) * 100)
      notes.push(
        `node ${node}: sequence ${text(q.sequence)} (${text(q.type)}) has used ${pct}% of its range: change the column to bigint`,
      )
    }
    const lag = num(m.replication_lag_ms)
    const commit = readCommit(m.commit)
    if (commit.degraded) notes.push(`node ${node}: sync mode degraded: ${commit.note}`)
    return [
      node,
      text(m.state),
      yesNo(m.is_replicating),
      yesNo(m.is_tainted),
      `${text(m.conflicts_resolved)}/${text(m.conflicts_pending)}`,
      lag === undefined ? NONE : String(Math.round(lag)),
      `${subs.filter((x) => x.enabled === true).length}/${subs.length}`,
      commit.cell,
    ]
  })
  const health = s.healthy === true ? 'healthy' : s.healthy === false ? 'NOT healthy' : ''
  const title = [`Cluster seen from node ${text(s.node)}`, health].filter(Boolean).join(', ')
  const table = renderTable({
    title: `${title}, replicaset version ${text(s.replicaset_version)}`,
    headers: [
      'NODE',
      'STATE',
      'REPLICATING',
      'TAINTED',
      'CONFLICTS res/pend',
      'LAG ms',
      'SUBS on/all',
      'COMMIT',
    ],
    rows,
    align: ['right', 'left', 'left', 'left', 'right', 'right', 'right', 'left'],
  })
  const reasons = (Array.isArray(s.reasons) ? s.reasons : []).map((r) => `not healthy: ${text(r)}`)
  return [table, ...notes, ...reasons].join('\n')
}

/** GET /v1/cluster/nodes */
export function renderNodes(body: unknown): string {
  const s = read<NodesBody>(body)
  const nodes = readList<NodeView>(s.nodes).sort(byNodeId)
  const notes: string[] = []
  const rows = nodes.map((n) => {
    const node = text(n.node)
    if (typeof n.join_error === 'string') notes.push(`node ${node}: ${n.join_error}`)
    const flaps = num(n.flaps)
    if (flaps) notes.push(`node ${node}: came back ${flaps} time${flaps === 1 ? '' : 's'}`)
    return [
      node,
      text(n.state),
      text(n.join_state),
      text(n.version),
      n.self === true ? 'this arbiter' : ago(n.last_heard_ms_ago),
      shortConninfo(n.postgres),
    ]
  })
  const table = renderTable({
    title: `Nodes seen from node ${text(s.node)}`,
    headers: ['NODE', 'STATE', 'JOIN', 'VERSION', 'LAST HEARD', 'POSTGRES'],
    rows,
    align: ['right'],
  })
  return [table, ...notes].join('\n')
}

/** GET /v1/cluster/replicaset */
export function renderReplicaset(body: unknown): string {
  const s = read<ClusterReplicasetBody>(body)
  const version = `replicaset version ${text(s.version)}${s.node === undefined ? '' : ` (node ${text(s.node)})`}`
  const tables = readList<ClusterReplicasetBody['replicaset'][number]>(s.replicaset)
  if (tables.length === 0) return `${version}\nno tables in the replicaset`
  const table = renderTable({
    headers: ['RELATION', 'STATUS'],
    rows: tables.map((t) => [text(t.relation), text(t.status)]),
  })
  return `${version}\n${table}`
}

/** GET /v1/cluster/history */
export function renderHistory(body: unknown): string {
  const s = read<ClusterHistoryBody>(body)
  const entries = readList<HistoryRow>(s.resolutions)
  if (entries.length === 0) {
    return `no conflicts or apply errors recorded (seen from node ${text(s.node)})`
  }
  const rows = entries.map((e) => [
    text(e.node),
    utc(e.occurred),
    text(e.subscription),
    text(e.relation),
    text(e.sql_state_code),
    resolved(e.occurred, e.resolved, e.action),
    text(e.reason),
  ])
  return renderTable({
    title: `History seen from node ${text(s.node)}, times UTC`,
    headers: ['NODE', 'OCCURRED', 'SUBSCRIPTION', 'RELATION', 'SQLSTATE', 'RESOLVED', 'REASON'],
    rows,
    align: ['right'],
  })
}

/** "after 0.4 s (skip)", or "pending" */
function resolved(occurred: unknown, at: unknown, action: unknown): string {
  if (typeof at !== 'string') return 'pending'
  const how = typeof action === 'string' && action !== 'none' ? ` (${action})` : ''
  const ms = Date.parse(at) - Date.parse(typeof occurred === 'string' ? occurred : '')
  return Number.isFinite(ms) && ms >= 0 ? `after ${duration(ms)}${how}` : `${utc(at)}${how}`
}

/** A member's commit mode as a cell: async, or sync with the peers waited for ("sync 1,2"). */
function readCommit(raw: unknown): { cell: string; degraded: boolean; note: string } {
  const c = read<{ mode?: unknown; standbys?: unknown; outside?: unknown; degraded?: unknown }>(raw)
  if (c.mode !== 'sync')
    return { cell: c.mode === 'async' ? 'async' : NONE, degraded: false, note: '' }
  const ids = (v: unknown) => (Array.isArray(v) ? v.map((n) => text(n)) : [])
  const standbys = ids(c.standbys)
  const outside = ids(c.outside)
  return {
    cell: `sync ${standbys.length > 0 ? standbys.join(',') : 'none'}`,
    degraded: c.degraded === true,
    note:
      outside.length > 0
        ? `commits do not wait for nodes ${outside.join(', ')}`
        : 'commits wait for fewer peers than the quorum',
  }
}
