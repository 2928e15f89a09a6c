// The arbiter's Prometheus metrics (prom-client), one registry per arbiter. Names follow
// Prometheus practice: prefix traktor_, base units in the name, _total for counters, no
// high-cardinality labels (subscriptions and relations are few and named by the operator).
// Values that live in PostgreSQL or the mesh are read at scrape time.
import client from 'prom-client'
import type { Logger } from '../log.js'
import { meshGauges } from './mesh-gauges.js'
import { postgresGauges } from './postgres-gauges.js'
import type { MetricsSources } from './sources.js'

export type { MetricsSources }

export class Metrics {
  readonly registry = new client.Registry()
  private readonly flaps: client.Counter
  private readonly proposals: client.Counter
  private readonly proposalSeconds: client.Histogram
  private readonly conflicts: client.Counter
  private readonly reenabled: client.Counter

  constructor(src: MetricsSources, log: Logger) {
    const r = this.registry
    // the event-loop lag histogram samples once a second (prom-client: every 10 ms, a hundred
    // wake-ups a second of an idle arbiter)
    client.collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 1000 })
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
    meshGauges(r, src)
    this.conflicts = new client.Counter({
      name: 'traktor_conflicts_total',
      help: 'Conflicts and apply failures resolved or handled here, by kind (insert_exists, update_origin_differs, ...), relation and outcome',
      labelNames: ['kind', 'relation', 'outcome'],
      registers: [r],
    })
    this.reenabled = new client.Counter({
      name: 'traktor_subscription_reenabled_total',
      help: 'Subscriptions enabled again after a lost publisher or a transient failure (not conflicts)',
      labelNames: ['subscription'],
      registers: [r],
    })
    postgresGauges(r, src, safe)
  }

  memberFlapped(): void {
    this.flaps.inc()
  }

  proposal(outcome: string, seconds: number): void {
    this.proposals.inc({ outcome })
    this.proposalSeconds.observe({ outcome }, seconds)
  }

  conflict(kind: string, relation: string, outcome: string, n = 1): void {
    this.conflicts.inc({ kind, relation, outcome }, n)
  }

  reenabledSubscription(subscription: string): void {
    this.reenabled.inc({ subscription })
  }

  async text(): Promise<string> {
    return await this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
