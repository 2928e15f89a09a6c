// Every route group an arbiter serves, in one list: the arbiter registers these, and the
// tests that check the OpenAPI document against the registered routes use the same list.
import type { Cluster } from '../../cluster/cluster.js'
import type { LocalNode } from '../../postgres/local.js'
import type { RouteGroup } from '../server.js'
import { arbiterRoutes } from './arbiter.js'
import { clusterRoutes } from './cluster.js'
import { jsonRpcRoutes } from './jsonrpc.js'
import { type MetricsText, metricsRoutes } from './metrics.js'
import { type MemberList, type PartitionSwitch, testingRoutes } from './testing.js'

export interface ApiParts {
  local: LocalNode
  nodeId: number
  /** mesh mode: the cluster service */
  cluster: Cluster | undefined
  /** why this node is not healthy (added to /v1/arbiter/status) */
  healthReasons: () => string[]
  metrics: MetricsText
  /** the test-only partition routes (config "testing": {"routes": true}) */
  partition?: { cluster: MemberList; mesh: PartitionSwitch } | undefined
}

export function apiRoutes(p: ApiParts): RouteGroup[] {
  return [
    arbiterRoutes(p.local, { mesh: p.cluster !== undefined, healthReasons: p.healthReasons }),
    clusterRoutes(p.cluster, p.nodeId),
    jsonRpcRoutes(p.cluster, p.nodeId),
    ...(p.partition ? [testingRoutes(p.partition.cluster, p.partition.mesh)] : []),
    metricsRoutes(p.metrics),
  ]
}
