// What a Mesh (node.ts) is made from: the mesh section of the config, and the knobs the tests
// and the benchmarks turn.
import type { Logger } from '../log.js'
import type { GossipTuning } from './libp2p.js'

export interface MeshInit {
  nodeId: number
  cluster: string
  listen: string[]
  bootstrap: string[]
  identityFile: string
  pskFile?: string
  insecure: boolean
  log: Logger
  /** cap on one gossip payload (default 64 KiB) */
  maxMessageBytes?: number
  /** cap on one RPC frame (default 1 MiB) */
  maxRpcBytes?: number
  /** default RPC deadline (default 3000 ms) */
  rpcTimeoutMs?: number
  /** connected to nobody this long, with a bootstrap address elsewhere: isolated (default 5 s) */
  isolatedAfterMs?: number
  /** gossipsub parameters over the defaults (the mesh benchmark compares settings) */
  gossipTuning?: GossipTuning
  /** how often each connection's liveness probe goes (default 500 ms; liveness.ts) */
  probeEveryMs?: number
  /** past this many members the mesh is sparse (default 16; overlay.ts) */
  fullMeshUpTo?: number | undefined
  /** past this many members a full mesh watches its ring's connections only (default 32) */
  probeAllUpTo?: number | undefined
}
