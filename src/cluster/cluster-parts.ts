// The parts of mesh mode's cluster service, built in dependency order and wired to each other
// (cluster.ts starts, stops and fronts them). A part that needs another built after it reads
// it through a closure, at call time.
import type { JoinMode } from '../config/types.js'
import type { Logger } from '../log.js'
import type { MeshIsolation, RpcHandler } from '../mesh/types.js'
import type { LocalNode } from '../postgres/local.js'
import { KeptValues } from './check-kept.js'
import { CheckNode } from './check-node.js'
import { Checker } from './checker.js'
import { ClusterHistory } from './cluster-history.js'
import { type ClusterPortsInit, checkPortOf, takesPart, usedSequences } from './cluster-ports.js'
import { ClusterStatus } from './cluster-status.js'
import { CommitMode, newer } from './commit-mode.js'
import type { Timings } from './detector.js'
import type { FaultHooks } from './faults.js'
import { IsolationWatch } from './isolation.js'
import type { JoinProgress } from './join.js'
import { Membership } from './membership.js'
import type { MeshPort } from './port.js'
import { type Outcome, Proposals } from './proposals.js'
import { Reconciler } from './reconcile.js'
import { Recovery } from './recovery.js'
import { RosterOps } from './roster-ops.js'
import { SequenceStriper } from './sequences.js'
import { SlotHealer } from './slot-healer.js'
import { Steps } from './steps.js'

export interface ClusterInit {
  mesh: MeshPort
  local: LocalNode
  nodeId: number
  advertisePostgres: string
  version: string
  timings: Timings
  log: Logger
  onOutcome?: (o: Outcome) => void
  /** a member came back alive after suspect or dead */
  onFlap?: () => void
  /** the check after row-level conflicts set so many rows of a table to their last writer's */
  onMended?: (relation: string, rows: number) => void
  /** background consistency check period (ms); 0 = off */
  checkEveryMs?: number
  /** a peer whose slot here was lost copies the cluster's data again (default true) */
  healLostSlots?: boolean
  /** node-striped sequences for replicated tables (default stripe) */
  sequences?: 'stripe' | 'off'
  /** sync: commits wait for every live, caught-up peer (synchronous_standby_names) */
  commit?: 'async' | 'sync'
  /** sync: how many peers a commit waits for (default every live one) */
  syncQuorum?: number
  /** how a new node joins (config `join`) */
  join?: JoinMode
  /** test-only: the join copy waits this long before copying */
  joinPauseMs?: number
  onJoinProgress?: (p: JoinProgress) => void
  /** where the fault suite acts in a proposal (faults.ts); nothing by default */
  faults?: FaultHooks
  noFence?: boolean
  /** test-only: how long a joining table's rows are hashed at prepare */
  contentHashMs?: number
  /** reasons of parts outside the cluster (the lww loop's), in every status it reports */
  moreReasons?: () => string[]
}

export interface ClusterParts {
  conflicts: ClusterHistory
  membership: Membership
  striper: SequenceStriper
  reconciler: Reconciler
  steps: Steps
  proposals: Proposals
  recovery: Recovery
  isolationWatch: IsolationWatch
  checkNode: CheckNode
  checker: Checker
  kept: KeptValues
  healer: SlotHealer
  commitMode: CommitMode
  roster: RosterOps
  view: ClusterStatus
}

/** What the parts ask of the cluster service around them. */
export interface ClusterHooks {
  isolation: () => MeshIsolation
  healthReasons: () => string[]
  resync: (node: number) => Promise<unknown>
  /** this node's own RPC handler (set once the service has started) */
  rpc: () => RpcHandler
}

export function buildParts(init: ClusterInit, log: Logger, hooks: ClusterHooks): ClusterParts {
  const p = {} as ClusterParts
  const isRemoved = (node: number) => p.reconciler.removed.has(node)
  const { mesh, nodeId, local } = init
  // what the checker and the striper need of the cluster (cluster-ports.ts); read when they
  // are built, after membership and the reconciler
  const ports = (): ClusterPortsInit => ({
    nodeId,
    mesh,
    membership: p.membership,
    isRemoved,
    isReady: () => p.reconciler.joinState === 'ready',
    rpc: hooks.rpc,
    tables: async () => (await local.cluster.replicasetSnapshot()).tables.map((t) => t.relation),
  })
  p.conflicts = new ClusterHistory({
    nodeId: init.nodeId,
    own: () => init.local.history(),
    mesh: init.mesh,
    members: () => p.membership.members(),
    log,
  })
  p.membership = new Membership({
    mesh,
    nodeId,
    postgres: init.advertisePostgres,
    version: init.version,
    timings: init.timings,
    log: init.log,
    self: () => ({
      joinState: p.reconciler.joinState,
      ...joinPercent(p.reconciler.joinProgress()),
      replicasetVersion: p.reconciler.version,
      rosterVersion: p.reconciler.rosterVersion,
      postgresUp: p.reconciler.postgresUp,
      commit: p.commitMode.current(),
    }),
    onChange: (m, previous) => {
      p.reconciler.kick()
      if (m.commit && newer(m.commit, p.commitMode.current()))
        void p.commitMode
          .adopt(m.commit, `node ${m.nodeId}`)
          .catch((err: Error) =>
            log.warn({ err: err.message, node: m.nodeId }, 'commit mode not adopted'),
          )
      if (m.state === 'alive' && previous !== undefined && previous !== 'alive') init.onFlap?.()
    },
  })
  p.striper = new SequenceStriper({
    local,
    nodeId,
    log: init.log,
    enabled: (init.sequences ?? 'stripe') === 'stripe',
    nodeIds: () => [
      nodeId,
      ...p.membership
        .members()
        .filter((m) => !m.duplicate && !p.reconciler.removed.has(m.nodeId))
        .map((m) => m.nodeId),
    ],
    gather: (rels) => usedSequences(ports(), rels),
  })
  p.reconciler = new Reconciler({
    local,
    membership: p.membership,
    mesh,
    nodeId,
    log: init.log,
    joinGraceMs: Math.max(1500, init.timings.suspectAfterMs * 1.5),
    striper: p.striper,
    ...(init.join ? { join: init.join } : {}),
    ...(init.joinPauseMs ? { joinPauseMs: init.joinPauseMs } : {}),
    ...(init.onJoinProgress ? { onJoinProgress: init.onJoinProgress } : {}),
  })
  p.steps = new Steps({
    local,
    nodeId,
    log: init.log,
    noFence: init.noFence === true,
    ...(init.contentHashMs ? { contentHashMs: init.contentHashMs } : {}),
    peerPostgres: (n) => p.membership.members().find((m) => m.nodeId === n)?.postgres,
    striper: p.striper,
    onApplied: () => p.reconciler.kick(),
    onActivity: () => p.recovery?.kick(),
    checkSoon: (relation) => p.checker.checkSoon(relation),
  })
  p.proposals = new Proposals({
    local,
    mesh,
    membership: p.membership,
    isRemoved: (node) => p.reconciler.removed.has(node),
    steps: p.steps,
    nodeId,
    log: init.log,
    ...(init.onOutcome ? { onOutcome: init.onOutcome } : {}),
    ...(init.faults ? { faults: init.faults } : {}),
    drain: (nodes, timeoutMs) => p.checkNode.sync({ nodes, timeoutMs }),
  })
  p.recovery = new Recovery({
    local,
    mesh,
    membership: p.membership,
    proposals: p.proposals,
    steps: p.steps,
    nodeId,
    log: init.log,
    onApplied: () => p.reconciler.kick(),
    checkSoon: (relation) => p.checker.checkSoon(relation),
  })
  p.isolationWatch = new IsolationWatch({ log: init.log, check: () => hooks.isolation() })
  p.checkNode = new CheckNode({ local, nodeId, log: init.log })
  p.checker = new Checker({
    nodeId,
    port: checkPortOf(ports()),
    log: init.log,
    everyMs: init.checkEveryMs ?? 0,
    ...(init.onMended ? { onMended: init.onMended } : {}),
  })
  p.kept = new KeptValues({
    nodeId,
    port: checkPortOf(ports()),
    log: init.log,
    store: {
      tables: () => local.rowLevel.keptTables(),
      pending: (relation, timeoutMs) => local.rowLevel.keptPending(relation, timeoutMs),
      done: (relation, entries) => local.rowLevel.keptDone(relation, entries),
    },
  })
  p.healer = new SlotHealer({
    nodeId,
    log: init.log,
    slots: () => local.slotHealth(),
    ready: (peer) =>
      p.membership
        .members()
        .some((m) => m.nodeId === peer && m.state === 'alive' && takesPart(m, isRemoved)),
    resync: (peer) => hooks.resync(peer),
    record: (h) => local.records.recordHeal(h),
  })
  p.commitMode = new CommitMode({
    local,
    nodeId,
    members: () => p.membership.members(),
    log: init.log,
    initialized: () => local.initialized(),
    configured: {
      mode: init.commit ?? 'async',
      ...(init.syncQuorum ? { quorum: init.syncQuorum } : {}),
    },
  })
  p.roster = new RosterOps({
    nodeId,
    local,
    mesh: init.mesh,
    membership: p.membership,
    reconciler: p.reconciler,
    log,
  })
  p.view = new ClusterStatus({
    nodeId,
    mesh: init.mesh,
    local,
    membership: p.membership,
    reconciler: p.reconciler,
    advertisePostgres: init.advertisePostgres,
    version: init.version,
    healthReasons: () => hooks.healthReasons(),
    sequences: () => p.striper.status(),
    commit: () => p.commitMode.view(),
  })
  return p
}

function joinPercent(p: JoinProgress | undefined): { joinPercent?: number } {
  return p ? { joinPercent: p.percent } : {}
}
