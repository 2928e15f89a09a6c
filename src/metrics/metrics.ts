// The arbiter's Prometheus metrics (prom-client), one registry per arbiter. Names follow
// Prometheus practice: prefix traktor_, base units in the name, _total for counters, no
// high-cardinality labels (subscriptions and relations are few and named by the operator).
// Values that live in PostgreSQL or the mesh are read at scrape time.
import client from 'prom-client'
import type { Logger } from '../log.js'

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
  subscriptions: () => Promise<Array<{ name: string; enabled: boolean; applyErrors: number }>>
  /** lag of the peers subscribed to this node, by their subscription name */
  lag: () => Promise<Array<{ subscription: string; bytes: number; seconds: number }>>
  conflictsPending: () => Promise<number>
}

export class Metrics {
  readonly registry = new client.Registry()
  private readonly flaps: client.Counter
  private readonly proposals: client.Counter
  private readonly proposalSeconds: client.Histogram
  private readonly conflicts: client.Counter

  constructor(src: MetricsSources, log: Logger) {
    const r = this.registry
    client.collectDefaultMetrics({ register: r })
    // prom-client names these gauges *_total, which promtool rightly refuses
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      r.removeSingleMetric(name)
    }
    const safe = <T>(what: string, fn: () => Promise<T>, fallback: T) =>
      fn().catch((err: Error) => {
        log.debug({ component: 'metrics', what, err: err.message }, 'metric source failed')
        return fallback
      })

    new client.Gauge({
      name: 'traktor_build_info',
      help: 'Build information; always 1',
      labelNames: ['version', 'node'],
      registers: [r],
    }).set({ version: src.version, node: String(src.nodeId) }, 1)

    new client.Gauge({
      name: 'traktor_members',
      help: 'Mesh members this arbiter sees, by state (itself excluded)',
      labelNames: ['state'],
      registers: [r],
      collect() {
        const counts = src.members?.() ?? {}
        for (const s of ['alive', 'suspect', 'dead', 'duplicate'])
          this.set({ state: s }, counts[s] ?? 0)
      },
    })
    this.flaps = new client.Counter({
      name: 'traktor_member_flaps_total',
      help: 'Times a member came back alive after being suspect or dead',
      registers: [r],
    })
    this.proposals = new client.Counter({
      name: 'traktor_proposals_total',
      help: 'Replicaset proposals this arbiter coordinated, by outcome',
      labelNames: ['outcome'],
      registers: [r],
    })
    this.proposalSeconds = new client.Histogram({
      name: 'traktor_proposal_duration_seconds',
      help: 'Time from a cluster call to its outcome, for proposals this arbiter coordinated',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    })
    new client.Gauge({
      name: 'traktor_proposals_in_doubt',
      help: 'Proposals prepared here whose outcome no reachable member knows',
      registers: [r],
      collect() {
        this.set(src.inDoubt?.() ?? 0)
      },
    })
    this.conflicts = new client.Counter({
      name: 'traktor_conflicts_total',
      help: 'Apply failures the resolver handled, by relation and outcome',
      labelNames: ['relation', 'outcome'],
      registers: [r],
    })
    new client.Gauge({
      name: 'traktor_conflicts_pending',
      help: 'Recorded apply failures not resolved yet',
      registers: [r],
      async collect() {
        this.set(await safe('pending', src.conflictsPending, 0))
      },
    })
    const applyErrors = new client.Gauge({
      name: 'traktor_subscription_apply_errors',
      help: 'Apply errors of a subscription since its statistics were reset (pg_stat_subscription_stats)',
      labelNames: ['subscription'],
      registers: [r],
    })
    new client.Gauge({
      name: 'traktor_subscription_enabled',
      help: '1 if the subscription is enabled, 0 if disabled',
      labelNames: ['subscription'],
      registers: [r],
      async collect() {
        this.reset()
        applyErrors.reset()
        for (const s of await safe('subscriptions', src.subscriptions, [])) {
          this.set({ subscription: s.name }, s.enabled ? 1 : 0)
          applyErrors.set({ subscription: s.name }, s.applyErrors)
        }
      },
    })
    const lagSeconds = new client.Gauge({
      name: 'traktor_subscription_lag_seconds',
      help: 'Apply lag of a peer subscribed to this node, on this node clock (replay_lag)',
      labelNames: ['subscription'],
      registers: [r],
    })
    new client.Gauge({
      name: 'traktor_subscription_lag_bytes',
      help: 'WAL bytes a peer subscribed to this node has not applied yet',
      labelNames: ['subscription'],
      registers: [r],
      async collect() {
        this.reset()
        lagSeconds.reset()
        for (const l of await safe('lag', src.lag, [])) {
          this.set({ subscription: l.subscription }, l.bytes)
          lagSeconds.set({ subscription: l.subscription }, l.seconds)
        }
      },
    })
    for (const [key, name, help] of [
      ['in', 'traktor_gossip_messages_received_total', 'Gossip messages accepted, by topic'],
      ['out', 'traktor_gossip_messages_sent_total', 'Gossip messages published, by topic'],
      [
        'rejected',
        'traktor_gossip_messages_rejected_total',
        'Gossip messages rejected by validation, by topic',
      ],
    ] as const) {
      new client.Counter({
        name,
        help,
        labelNames: ['topic'],
        registers: [r],
        collect() {
          const g = src.gossip?.()
          if (!g) return
          this.reset()
          for (const [topic, n] of Object.entries(g[key])) this.inc({ topic }, n)
        },
      })
    }
  }

  memberFlapped(): void {
    this.flaps.inc()
  }

  proposal(outcome: string, seconds: number): void {
    this.proposals.inc({ outcome })
    this.proposalSeconds.observe({ outcome }, seconds)
  }

  conflict(relation: string, outcome: string): void {
    this.conflicts.inc({ relation, outcome })
  }

  async text(): Promise<string> {
    return await this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
