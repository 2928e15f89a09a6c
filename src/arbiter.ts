// One arbiter: its parts started in dependency order and stopped in reverse. Standalone mode
// is TRAKTOR's node-by-node arbiter; mesh mode adds the libp2p mesh and the cluster service.

import { apiRoutes } from './api/routes/index.js'
import { ApiServer } from './api/server.js'
import { Cluster } from './cluster/cluster.js'
import { isolatedAfterMs, probeEveryMs } from './cluster/detector.js'
import { type FaultHooks, faultAt } from './cluster/faults.js'
import { anyLww, type Config, strategyFor } from './config/types.js'
import { stopInOrder } from './lifecycle.js'
import type { Logger } from './log.js'
import { Mesh } from './mesh/node.js'
import { Metrics } from './metrics/metrics.js'
import { LocalNode } from './postgres/local.js'
import { LwwEngine } from './resolver/lww-engine.js'
import { Resolver } from './resolver/resolver.js'
import { VERSION } from './version.js'

export interface ArbiterInit {
  config: Config
  log: Logger
}

type State = { kind: 'stopped' } | { kind: 'running' }

/** the row-level resolution round runs at least this often */
/** the lww engine's fallback tick: a queued key wakes it at once (LISTEN) */
const LWW_TICK_MS = 1000

export class Arbiter {
  readonly config: Config
  readonly local: LocalNode
  readonly resolver: Resolver
  readonly lww: LwwEngine | undefined
  readonly api: ApiServer
  readonly metrics: Metrics
  readonly mesh: Mesh | undefined
  readonly cluster: Cluster | undefined
  private readonly log: Logger
  private state: State = { kind: 'stopped' }

  constructor(init: ArbiterInit) {
    const { config, log } = init
    this.config = config
    this.log = log
    const meshMode = config.mesh !== undefined
    this.local = new LocalNode({
      nodeId: config.nodeId,
      conninfo: config.postgres,
      log,
      watchPeers: !meshMode,
      lww: anyLww(config),
      lwwFor: (rel) => strategyFor(config, `${rel.schema}.${rel.table}`) === 'lww',
      recordMissingRows: config.recordMissingRows,
      guardIntervalMs: config.checkIntervalMs,
      onPublicationRepaired: (r) => {
        if (r.recreated) void this.cluster?.askPeersToResubscribe()
      },
      ...(config.peerPassword === undefined ? {} : { peerPassword: config.peerPassword }),
    })
    if (config.mesh) {
      const m = config.mesh
      const timings = {
        heartbeatMs: m.heartbeatMs,
        suspectAfterMs: m.suspectAfterMs,
        deadAfterMs: m.deadAfterMs,
      }
      this.mesh = new Mesh({
        nodeId: config.nodeId,
        cluster: m.cluster,
        listen: [...m.listen],
        bootstrap: [...m.bootstrap],
        identityFile: m.identityFile,
        ...(m.pskFile === undefined ? {} : { pskFile: m.pskFile }),
        insecure: m.insecure,
        isolatedAfterMs: isolatedAfterMs(timings),
        probeEveryMs: probeEveryMs(timings),
        ...(m.fullMeshUpTo === undefined ? {} : { fullMeshUpTo: m.fullMeshUpTo }),
        log,
      })
      this.cluster = new Cluster({
        mesh: this.mesh,
        local: this.local,
        nodeId: config.nodeId,
        advertisePostgres: config.advertisePostgres,
        version: VERSION,
        timings,
        log,
        onOutcome: (o) => this.metrics.proposal(o.outcome, o.durationMs / 1000),
        onFlap: () => this.metrics.memberFlapped(),
        onMended: (relation, rows) =>
          this.metrics.conflict('versions_differ', relation, 'mended', rows),
        checkEveryMs: config.checkEveryMs,
        healLostSlots: config.healLostSlots,
        sequences: config.sequences,
        commit: config.commit,
        ...(config.syncQuorum ? { syncQuorum: config.syncQuorum } : {}),
        join: config.join,
        ...(config.testing?.joinPauseMs ? { joinPauseMs: config.testing.joinPauseMs } : {}),
        ...testFaults(config, log),
        ...(config.testing?.fence === false ? { noFence: true } : {}),
        ...(config.testing?.contentHashMs ? { contentHashMs: config.testing.contentHashMs } : {}),
        moreReasons: () => this.lww?.healthReasons() ?? [],
      })
    }
    const mesh = this.mesh
    const cluster = this.cluster
    this.metrics = new Metrics(
      {
        nodeId: config.nodeId,
        version: VERSION,
        ...(cluster
          ? {
              members: () => cluster.memberCounts(),
              inDoubt: () => cluster.inDoubt(),
              sync: () => cluster.commitMode.metrics(),
              stuck: () => cluster.stuckCount(),
              isolated: () => cluster.isolation().isolated,
              checks: () => cluster.checker.metrics(),
              sequences: () => cluster.striper.status(),
              join: () => cluster.joinMetrics(),
            }
          : {}),
        ...(mesh
          ? {
              gossip: () => {
                const c = mesh.counters()
                return { in: c.gossipIn, out: c.gossipOut, rejected: c.gossipRejected }
              },
              dialFailures: () => mesh.counters().dialFailures,
              connections: () => ({ peers: mesh.connectedPeers().length, sparse: mesh.sparse() }),
            }
          : {}),
        subscriptions: () => this.local.subscriptions(),
        lag: () => this.local.replication.lagBySubscriber(),
        conflictsPending: async () => (await this.local.records.historyCounts()).pending,
        slots: () => this.local.slotHealth(),
        healthReasons: async () => this.healthReasons(),
      },
      log,
    )
    this.lww = anyLww(config)
      ? new LwwEngine({
          local: this.local,
          log,
          tickMs: config.testing?.lwwTickMs ?? Math.min(config.checkIntervalMs, LWW_TICK_MS),
          onResolved: (counts) => {
            for (const c of counts) this.metrics.conflict(c.kind, c.relation, c.action, c.n)
          },
          checkSoon: (relation) => this.cluster?.checkSoon(relation),
          keptSoon: (relation) => this.cluster?.keptSoon(relation),
          conflictsQuiet: (relation, atMs) =>
            this.cluster?.checker.checkAfterConflicts(relation, atMs),
        })
      : undefined
    this.resolver = new Resolver({
      local: this.local,
      ...(this.lww ? { lww: this.lww } : {}),
      strategy: (relation) => strategyFor(config, relation),
      intervalMs: config.checkIntervalMs,
      log,
      onEvent: (e) => {
        if (e.kind === 'action') {
          const f = e.action.failure
          if (e.action.kind === 'enable') {
            this.metrics.reenabledSubscription(e.action.subscription)
            return
          }
          this.metrics.conflict(failureKind(f.sqlState), f.relation ?? 'unknown', e.action.kind)
          void cluster?.announceConflict({
            subscription: e.action.subscription,
            lsn: f.finishLsn ?? '0/0',
            relation: f.relation ?? null,
            sqlState: f.sqlState,
            reason: f.detail ?? f.message,
            action: e.action.kind,
            resolved: null,
            occurred: new Date(Date.parse(f.at) || Date.now()).toISOString(),
          })
          // a skipped remote transaction leaves the table different here: health says so
          if (e.action.kind === 'skip' && f.relation) cluster?.checkSoon(f.relation)
        } else if (e.kind === 'missing') {
          cluster?.checkSoon(e.relation)
        } else {
          this.metrics.conflict(
            failureKind(e.entry.sqlStateCode ?? ''),
            e.entry.relation ?? 'unknown',
            'resolved',
          )
        }
      },
    })
    this.api = new ApiServer({
      config: config.api,
      apiKey: config.api.apiKey,
      publicEndpoints: config.api.publicEndpoints,
      log,
      publicPaths: ['/metrics'],
      routes: apiRoutes({
        local: this.local,
        nodeId: config.nodeId,
        cluster,
        healthReasons: () => this.healthReasons(),
        metrics: this.metrics,
        partition: config.testing?.routes && cluster && mesh ? { cluster, mesh } : undefined,
      }),
      health: async () => {
        try {
          await this.local.ping()
        } catch (err) {
          return { ok: false, detail: { node: config.nodeId, postgres: (err as Error).message } }
        }
        const reasons = this.healthReasons()
        return {
          ok: reasons.length === 0,
          detail: {
            node: config.nodeId,
            postgres: 'reachable',
            mode: cluster ? 'mesh' : 'standalone',
            ...(cluster ? { join_state: cluster.reconciler.joinState } : {}),
            ...(reasons.length > 0 ? { reasons, error: reasons.join('; ') } : {}),
          },
        }
      },
    })
  }

  async start(): Promise<void> {
    if (this.state.kind === 'running') return
    // running from the first step, so that stop() releases whatever a failed start took
    this.state = { kind: 'running' }
    await this.local.start()
    if (this.mesh && this.cluster) {
      // the cluster's reconciler initialises this node (idempotently) on its first pass
      await this.mesh.start()
      await this.cluster.start()
    }
    // with resolver 'off' the loop still records conflicts and re-enables after a lost publisher
    this.resolver.start()
    this.lww?.start()
    await this.api.start()
    this.log.info(
      {
        mode: this.mesh ? 'mesh' : 'standalone',
        api: this.api.url,
        resolver: this.config.resolver,
        ...(this.mesh ? { peerId: this.mesh.peerId, listen: this.mesh.addresses() } : {}),
      },
      'arbiter started',
    )
  }

  /** Why this node is not healthy (none: healthy): the cluster's view, or the node's alone. */
  healthReasons(): string[] {
    if (this.cluster) return this.cluster.healthReasons() // the lww loop's included
    return [...this.local.healthReasons(), ...(this.lww?.healthReasons() ?? [])]
  }

  async stop(): Promise<void> {
    if (this.state.kind !== 'running') return
    this.state = { kind: 'stopped' }
    await stopInOrder(this.log, [
      ['api', () => this.api.stop()],
      ['lww', () => this.lww?.stop()],
      ['resolver', () => this.resolver.stop()],
      ['cluster', () => this.cluster?.stop()],
      ['mesh', () => this.mesh?.stop()],
      ['postgres', () => this.local.stop()],
    ])
    this.log.info('arbiter stopped')
  }
}

/** The conflict kind an apply error stands for, as far as its SQLSTATE tells. */
function failureKind(sqlState: string): string {
  if (sqlState === '23505') return 'insert_exists'
  return sqlState.startsWith('23') ? 'constraint' : 'apply_error'
}

/** The fault suite's kill or freeze of a coordinator (`testing.crashAt` / `testing.freezeAt`). */
function testFaults(config: Config, log: Logger): { faults?: FaultHooks } {
  const t = config.testing
  if (t?.crashAt) return { faults: faultAt(t.crashAt, 'SIGKILL', log) }
  if (t?.freezeAt) return { faults: faultAt(t.freezeAt, 'SIGSTOP', log) }
  return {}
}
