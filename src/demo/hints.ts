// What a user can try next, with the real ports, URLs and key of this demo run.
import type { DemoNode } from './demo.js'

export interface HintsInit {
  nodes: DemoNode[]
  apiKey: string
  password: string
  db: string
  role: string
  table: string
  logFile: string
}

export function hints(h: HintsInit): string {
  const first = h.nodes[0]
  if (!first) return ''
  const psql = h.nodes
    .map(
      (n) =>
        `    psql "host=127.0.0.1 port=${n.pg.port} dbname=${h.db} user=${h.role} password=${h.password}"   # node ${n.id}`,
    )
    .join('\n')
  const apis = h.nodes.map((n) => `    node ${n.id}: ${n.apiUrl}`).join('\n')
  return `Try it:

  Write on any node, read on every other (psql from the postgresql-client package):
${psql}
    INSERT INTO ${h.table} (id, node, message) VALUES ('mine', 0, 'hello');

  The arbiters' HTTP APIs (API key: ${h.apiKey}):
${apis}
    curl -H 'X-API-KEY: ${h.apiKey}' ${first.apiUrl}/v1/cluster/status
    curl -H 'X-API-KEY: ${h.apiKey}' ${first.apiUrl}/v1/cluster/nodes
    curl -X PUT -H 'X-API-KEY: ${h.apiKey}' ${first.apiUrl}/v1/cluster/replicaset/demo.another_table
    curl -H 'Content-Type: application/json' -H 'X-API-KEY: ${h.apiKey}' ${first.apiUrl}/rpc \\
         -d '{"jsonrpc": "2.0", "id": 1, "method": "replicaset.list"}'

  OpenAPI description: ${first.apiUrl}/docs        Prometheus metrics: ${first.apiUrl}/metrics

  From a shell:
    export TRAKTOR_URL=${first.apiUrl} TRAKTOR_API_KEY=${h.apiKey}
    npx traktor ctl status
    npx traktor ctl nodes --watch
    npx traktor ctl replicaset list

  Arbiter logs (JSON lines): ${h.logFile}
`
}
