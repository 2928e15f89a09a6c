// One run of one command: the REST call it makes and what its answer means (a table or the
// server's JSON on stdout, reasons on stderr, an exit code).
import type { Command } from './args.js'
import { EXIT } from './errors.js'
import type { ApiClient } from './http.js'
import { renderHistory, renderNodes, renderReplicaset, renderStatus } from './render.js'
import { reportCheck, reportRepair } from './render-check.js'
import {
  type Report,
  reportCommit,
  reportDdl,
  reportOutcome,
  reportRefusal,
  reportRemoveNode,
} from './report.js'

export interface Route {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST'
  path: string
  body?: unknown
}

export function routeOf(c: Command): Route {
  switch (c.name) {
    case 'status':
      return { method: 'GET', path: '/v1/cluster/status' }
    case 'nodes':
      return { method: 'GET', path: '/v1/cluster/nodes' }
    case 'history':
      return { method: 'GET', path: '/v1/cluster/history' }
    case 'replicaset list':
      return { method: 'GET', path: '/v1/cluster/replicaset' }
    case 'replicaset add':
      return { method: 'PUT', path: `/v1/cluster/replicaset/${encodeURIComponent(c.relation)}` }
    case 'replicaset remove':
      return { method: 'DELETE', path: `/v1/cluster/replicaset/${encodeURIComponent(c.relation)}` }
    case 'remove-node':
      return { method: 'DELETE', path: `/v1/cluster/nodes/${c.node}` }
    case 'readmit-node':
      return { method: 'PUT', path: `/v1/cluster/nodes/${c.node}` }
    case 'resync':
      return { method: 'POST', path: `/v1/cluster/nodes/${c.node}/resync` }
    case 'check':
      return {
        method: 'GET',
        path:
          c.relation === undefined
            ? '/v1/cluster/check'
            : `/v1/cluster/check/${encodeURIComponent(c.relation)}`,
      }
    case 'commit':
      return {
        method: 'PUT',
        path: '/v1/cluster/commit',
        body: { mode: c.mode, ...(c.quorum === undefined ? {} : { quorum: c.quorum }) },
      }
    case 'ddl':
      return { method: 'POST', path: '/v1/cluster/ddl', body: { sql: c.sql } }
    case 'check repair':
      return {
        method: 'POST',
        path: `/v1/cluster/check/${encodeURIComponent(c.relation)}/repair${c.from === undefined ? '' : `?from=${c.from}`}`,
      }
  }
}

const READERS: Partial<Record<Command['name'], (body: unknown) => string>> = {
  status: renderStatus,
  nodes: renderNodes,
  history: renderHistory,
  'replicaset list': renderReplicaset,
}

/** Turn one answer into a report; `json` keeps the server's body as the output. */
export function reportAnswer(c: Command, status: number, body: unknown, json: boolean): Report {
  const ok = status >= 200 && status < 300
  let report: Report
  if (c.name === 'replicaset add' || c.name === 'replicaset remove') {
    report = reportOutcome(status, body)
  } else if (c.name === 'check repair') {
    report = reportRepair(status, body)
  } else if (c.name === 'commit') {
    report = reportCommit(status, body)
  } else if (c.name === 'ddl') {
    report = reportDdl(status, body)
  } else if (!ok) {
    report = reportRefusal(status, body)
  } else if (c.name === 'remove-node' || c.name === 'readmit-node') {
    report = reportRemoveNode(body, c.name === 'remove-node' ? 'removed' : 're-admitted')
  } else if (c.name === 'check') {
    report = reportCheck(body)
  } else if (c.name === 'resync') {
    report = {
      out: [
        `node ${c.node} is copying the cluster data again; traktor ctl nodes shows its progress`,
      ],
      err: [],
      exit: EXIT.ok,
    }
  } else {
    const render = READERS[c.name]
    // a status that is not healthy is a failure for scripts (the reasons are in the table)
    const unhealthy = c.name === 'status' && (body as { healthy?: unknown })?.healthy === false
    report = {
      out: render ? [render(body)] : [],
      err: [],
      exit: unhealthy ? EXIT.refused : EXIT.ok,
    }
  }
  if (!json) return report
  return { ...report, out: [JSON.stringify(body ?? null, null, 2)] }
}

export async function runOnce(
  client: ApiClient,
  c: Command,
  json: boolean,
  signal?: AbortSignal,
): Promise<Report> {
  const { method, path, body } = routeOf(c)
  const answer = await client.request(method, path, signal, body)
  return reportAnswer(c, answer.status, answer.body, json)
}
