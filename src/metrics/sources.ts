// What the metrics read at scrape time, each from the part that owns it (undefined where the
// part does not run: standalone mode has no mesh).
import type { CheckRecord } from '../cluster/checker.js'
import type { SlotObservation } from '../postgres/health-rules.js'

export interface MetricsSources {
  nodeId: number
  version: string
  /** members by state; undefined in standalone mode */
  members?: () => Record<string, number>
  gossip?: () => {
    in: Record<string, number>
    out: Record<string, number>
    rejected: Record<string, number>
  }
  inDoubt?: () => number
  /** sync mode: the peers waited for, whether some live peer is left out, seconds so */
  sync?: () => {
    sync: boolean
    standbys: number[]
    degraded: boolean
    degradedSeconds: number
    cyclesBroken: number
  }
  /** decided changes whose steps keep failing on some node */
  stuck?: () => number
  /** the reasons this node is not healthy (as /healthz lists them) */
  healthReasons?: () => Promise<string[]>
  /** cut off from the mesh (cluster/isolation.ts) */
  isolated?: () => boolean
  /** failed dials of the mesh's keep-connected loops, since start */
  dialFailures?: () => number
  /** the mesh's peers with an open connection here, and whether the mesh is sparse */
  connections?: () => { peers: number; sparse: boolean }
  subscriptions: () => Promise<Array<{ name: string; enabled: boolean; applyErrors: number }>>
  /** lag of the peers subscribed to this node, by their subscription name */
  lag: () => Promise<Array<{ subscription: string; bytes: number; seconds: number }>>
  conflictsPending: () => Promise<number>
  /** the peers' replication slots on this server, as the health watch last saw them */
  slots?: () => SlotObservation[]
  /** what the last consistency checks found (mesh mode) */
  checks?: () => { lastAtSeconds: number | undefined; tables: CheckRecord[] }
  /** the replicated tables' sequences (mesh mode, sequences: stripe) */
  sequences?: () => Array<{ sequence: string; used_ratio: number; near_overflow: boolean }>
  /** this node's copy of the cluster's data (mesh mode; join.ts) */
  join?: () => {
    copying: boolean
    percent: number
    rowsCopied: number
    donorPauseMs: number | undefined
  }
}
