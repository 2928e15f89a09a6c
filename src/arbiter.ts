// One arbiter: its parts started in dependency order and stopped in reverse. Standalone mode
// is TRAKTOR's node-by-node arbiter; mesh mode adds the libp2p mesh and the cluster service.

import { arbiterRoutes } from './api/routes/arbiter.js'
import { clusterRoutes } from './api/routes/cluster.js'
import { jsonRpcRoutes } from './api/routes/jsonrpc.js'
import { testingRoutes } from './api/routes/testing.js'
import { ApiServer } from './api/server.js'
import { Cluster } from './cluster/cluster.js'
import type { Config } from './config/types.js'
import type { Logger } from './log.js'
import { Mesh } from './mesh/node.js'
import { Metrics } from './metrics/metrics.js'
import { historyCounts } from './postgres/history.js'
import { LocalNode } from './postgres/local.js'
import { lagBySubscriber } from './postgres/status.js'
import { Resolver } from './resolver/resolver.js'
import { VERSION } from './version.js'

export interface ArbiterInit {
  config: Config
  log: Logger
}

type State = { kind: 'stopped' } | { kind: 'running' }

export class Arbiter {
  readonly config: Config
  readonly local: LocalNode
  readonly resolver: Resolver
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
      ...(config.peerPassword === undefined ? {} : { peerPassword: config.peerPassword }),
    })
    if (config.mesh) {
      const m = config.mesh
      this.mesh = new Mesh({
        nodeId: config.nodeId,
        cluster: m.cluster,
        listen: [...m.listen],
        bootstrap: [...m.bootstrap],
        identityFile: m.identityFile,
        ...(m.pskFile === undefined ? {} : { pskFile: m.pskFile }),
        insecure: m.insecure,
        log,
      })
      this.cluster = new Cluster({
        mesh: this.mesh,
        local: this.local,
        nodeId: config.nodeId,
        conninfo: config.postgres,
        advertisePostgres: config.advertisePostgres,
        version: VERSION,
        timings: {
          heartbeatMs: m.heartbeatMs,
          suspectAfterMs: m.suspectAfterMs,
          deadAfterMs: m.deadAfterMs,
        },
        log,
        onOutcome: (o) => this.metrics.proposal(o.outcome, o.durationMs / 1000),
        onFlap: () => this.metrics.memberFlapped(),
        ...(config.testing?.crashAt ? { crashAt: config.testing.crashAt } : {}),
      })
    }
    const mesh = this.mesh
    const cluster = this.cluster
    this.metrics = new Metrics(
      {
        nodeId: config.nodeId,
        version: VERSION,
        ...(cluster
          ? { members: () => cluster.memberCounts(), inDoubt: () => cluster.inDoubt() }
          : {}),
        ...(mesh
          ? {
              gossip: () => {
                const c = mesh.counters()
                return { in: c.gossipIn, out: c.gossipOut, rejected: c.gossipRejected }
              },
            }
          : {}),
        subscriptions: () => this.local.subscriptions(),
        lag: () => lagBySubscriber(this.local.db),
        conflictsPending: async () => (await historyCounts(this.local.db)).pending,
      },
      log,
    )
    this.resolver = new Resolver({
      local: this.local,
      strategy: config.resolver,
      intervalMs: config.checkIntervalMs,
      log,
      onEvent: (e) => {
        if (e.kind === 'action') {
          const f = e.action.failure
          this.metrics.conflict(f.relation ?? 'unknown', e.action.kind)
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
        } else {
          this.metrics.conflict(e.entry.relation ?? 'unknown', 'resolved')
        }
      },
    })
    this.api = new ApiServer({
      config: config.api,
      apiKey: config.api.apiKey,
      publicEndpoints: config.api.publicEndpoints,
      log,
      publicPaths: ['/metrics'],
      routes: [
        arbiterRoutes(this.local),
        clusterRoutes(cluster, config.nodeId),
        jsonRpcRoutes(cluster, config.nodeId),
        ...(config.testing?.routes && cluster && mesh ? [testingRoutes(cluster, mesh)] : []),
        (app) => {
          app.get('/metrics', async (_req, reply) => {
            await reply
              .header('content-type', this.metrics.contentType)
              .send(await this.metrics.text())
          })
        },
      ],
      health: async () => {
        try {
          await this.local.db.query('SELECT 1')
          const dup = cluster?.membership.selfDuplicated() ?? false
          return {
            ok: !dup,
            detail: {
              node: config.nodeId,
              postgres: 'reachable',
              mode: cluster ? 'mesh' : 'standalone',
              ...(cluster ? { join_state: cluster.reconciler.joinState } : {}),
              ...(dup ? { error: 'another arbiter claims this node id' } : {}),
            },
          }
        } catch (err) {
          return { ok: false, detail: { node: config.nodeId, postgres: (err as Error).message } }
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

  async stop(): Promise<void> {
    if (this.state.kind !== 'running') return
    this.state = { kind: 'stopped' }
    await this.api.stop()
    await this.resolver.stop()
    await this.cluster?.stop()
    await this.mesh?.stop()
    await this.local.stop()
    this.log.info('arbiter stopped')
  }
}
