// The arbiter's Prometheus metrics (prom-client), one registry per arbiter. Names follow
// Prometheus practice: prefix traktor_, base units in the name, _total for counters, no
// high-cardinality labels (subscriptions and relations are few and named by the operator).
// Values that live in PostgreSQL or the mesh are read at scrape time.
import client from 'prom-client'
import type { CheckRecord } from '../cluster/checker.js'
import type { Logger } from '../log.js'
import type { SlotObservation } from '../postgres/health-rules.js'

const WAL_STATUSES = ['reserved', 'extended', 'unreserved', 'lost'] as const

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

export class Metrics {
  readonly registry = new client.Registry()
  private readonly flaps: client.Counter
  private readonly proposals: client.Counter
  private readonly proposalSeconds: client.Histogram
  private readonly conflicts: client.Counter
  private readonly reenabled: client.Counter

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
    new client.Gauge({
      name: 'traktor_join_copying',
      help: '1 while this node copies the cluster data before it becomes ready (issue 12)',
      registers: [r],
      collect() {
        this.set(src.join?.().copying ? 1 : 0)
      },
    })
    new client.Gauge({
      name: 'traktor_join_progress_percent',
      help: "How far this node's copy of the cluster data is (100 once done)",
      registers: [r],
      collect() {
        const j = src.join?.()
        if (j) this.set(j.percent)
      },
    })
    new client.Gauge({
      name: 'traktor_join_rows_copied',
      help: "Rows this node's last copy of the cluster data has copied",
      registers: [r],
      collect() {
        const j = src.join?.()
        if (j) this.set(j.rowsCopied)
      },
    })
    new client.Gauge({
      name: 'traktor_join_donor_pause_seconds',
      help: "How long the donor's writers waited on the SHARE lock of this node's last snapshot",
      registers: [r],
      collect() {
        const ms = src.join?.().donorPauseMs
        if (ms !== undefined) this.set(ms / 1000)
      },
    })
    new client.Gauge({
      name: 'traktor_mesh_isolated',
      help: '1 while this arbiter reaches no peer of its mesh (wrong swarm key, dead bootstrap peer, every member gone)',
      registers: [r],
      collect() {
        this.set(src.isolated?.() === true ? 1 : 0)
      },
    })
    new client.Counter({
      name: 'traktor_mesh_dial_failures_total',
      help: 'Dials to mesh peers and bootstrap addresses that failed',
      registers: [r],
      collect() {
        const n = src.dialFailures?.()
        if (n === undefined) return
        this.reset()
        this.inc(n)
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
    new client.Gauge({
      name: 'traktor_commit_sync',
      help: 'The commit mode on this node: 1 sync, 0 async (mesh mode)',
      registers: src.sync ? [r] : [],
      collect() {
        this.set(src.sync?.().sync ? 1 : 0)
      },
    })
    new client.Gauge({
      name: 'traktor_sync_standbys',
      help: 'Sync mode: peers every commit on this node waits for (0 in async mode)',
      registers: src.sync ? [r] : [],
      collect() {
        this.set(src.sync?.().standbys.length ?? 0)
      },
    })
    new client.Gauge({
      name: 'traktor_sync_degraded',
      help: 'Sync mode: 1 while some peer is not waited for (dead, catching up, not streaming)',
      registers: src.sync ? [r] : [],
      collect() {
        this.set(src.sync?.().degraded ? 1 : 0)
      },
    })
    let cyclesReported = 0
    new client.Counter({
      name: 'traktor_sync_cycles_broken_total',
      help: "Sync mode: write-write cycles broken by releasing this node's waiting commits",
      registers: src.sync ? [r] : [],
      collect() {
        const n = src.sync?.().cyclesBroken ?? 0
        if (n > cyclesReported) this.inc(n - cyclesReported)
        cyclesReported = Math.max(n, cyclesReported)
      },
    })
    let degradedReported = 0
    new client.Counter({
      name: 'traktor_sync_degraded_seconds_total',
      help: 'Sync mode: time spent with some peer not waited for',
      registers: src.sync ? [r] : [],
      collect() {
        // a counter only goes up: add what passed since the last scrape
        const s = src.sync?.().degradedSeconds ?? 0
        if (s > degradedReported) this.inc(s - degradedReported)
        degradedReported = Math.max(s, degradedReported)
      },
    })
    new client.Gauge({
      name: 'traktor_proposals_stuck',
      help: 'Committed changes this arbiter coordinated whose steps keep failing on some node',
      registers: [r],
      collect() {
        this.set(src.stuck?.() ?? 0)
      },
    })
    new client.Gauge({
      name: 'traktor_healthy',
      help: '1 if this node is healthy, 0 if /healthz lists reasons (degraded)',
      registers: [r],
      async collect() {
        const reasons = await safe('health', async () => (await src.healthReasons?.()) ?? [], [
          'unknown',
        ])
        this.set(reasons.length === 0 ? 1 : 0)
      },
    })
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
    // each reads its source itself: a gauge set inside another's collect would lag one scrape
    new client.Gauge({
      name: 'traktor_slot_wal_status',
      help: "A peer subscription's replication slot on this server: 1 for its wal_status (reserved, extended, unreserved, lost), 0 for the others",
      labelNames: ['slot', 'status'],
      registers: [r],
      collect() {
        this.reset()
        for (const s of src.slots?.() ?? [])
          for (const status of WAL_STATUSES)
            this.set({ slot: s.slot, status }, s.walStatus === status ? 1 : 0)
      },
    })
    new client.Gauge({
      name: 'traktor_slot_retained_wal_bytes',
      help: "WAL a peer subscription's replication slot on this server keeps (current LSN - restart_lsn)",
      labelNames: ['slot'],
      registers: [r],
      collect() {
        this.reset()
        for (const s of src.slots?.() ?? []) this.set({ slot: s.slot }, s.retainedBytes)
      },
    })
    new client.Gauge({
      name: 'traktor_check_divergent_rows',
      help: 'Rows of a table that differed between the nodes at its last consistency check',
      labelNames: ['table'],
      registers: [r],
      collect() {
        this.reset()
        for (const t of src.checks?.().tables ?? []) this.set({ table: t.relation }, t.differing)
      },
    })
    new client.Gauge({
      name: 'traktor_check_duration_seconds',
      help: 'How long the last consistency check of a table took',
      labelNames: ['table'],
      registers: [r],
      collect() {
        this.reset()
        for (const t of src.checks?.().tables ?? [])
          this.set({ table: t.relation }, t.durationMs / 1000)
      },
    })
    new client.Gauge({
      name: 'traktor_sequence_used_ratio',
      help: "Share of its range a replicated table's sequence has used (0..1)",
      labelNames: ['sequence'],
      registers: [r],
      collect() {
        this.reset()
        for (const s of src.sequences?.() ?? []) this.set({ sequence: s.sequence }, s.used_ratio)
      },
    })
    new client.Gauge({
      name: 'traktor_sequences_near_overflow',
      help: 'Sequences of replicated tables (smallint, integer) within 10% of their maximum',
      registers: [r],
      collect() {
        this.set((src.sequences?.() ?? []).filter((s) => s.near_overflow).length)
      },
    })
    new client.Gauge({
      name: 'traktor_check_last_timestamp_seconds',
      help: 'When the last consistency check this node knows of finished (Unix time; 0 before any)',
      registers: [r],
      collect() {
        this.set(src.checks?.().lastAtSeconds ?? 0)
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
