// Gauges of this node's PostgreSQL (health, subscriptions, lag, slots, consistency checks,
// sequences), read at scrape time; a source that fails reads as its fallback.
import client from 'prom-client'
import type { MetricsSources } from './sources.js'

const WAL_STATUSES = ['reserved', 'extended', 'unreserved', 'lost'] as const

/** a source read at scrape time, its fallback when it fails */
export type Safe = <T>(what: string, fn: () => Promise<T>, fallback: T) => Promise<T>

export function postgresGauges(r: client.Registry, src: MetricsSources, safe: Safe): void {
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
}
