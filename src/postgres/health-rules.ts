// What the node's own PostgreSQL says about its replication, turned into health reasons. Pure:
// an observation and what the last ones remembered in, reasons and the new memory out, so the
// thresholds are unit-tested without servers. Each reason names the object and the way out.

export interface SlotObservation {
  slot: string
  /** the peer whose subscription uses the slot (trktr_sub_<peer>_<self>) */
  peer: number
  /** pg_replication_slots.wal_status: reserved, extended, unreserved, lost (null: no WAL yet) */
  walStatus: string | null
  active: boolean
  retainedBytes: number
}

export interface SubscriptionObservation {
  name: string
  peer: number
  enabled: boolean
  /** an apply worker runs and has received from the publisher */
  streaming: boolean
}

export interface HealthObservation {
  atMs: number
  slots: SlotObservation[]
  subscriptions: SubscriptionObservation[]
  /** unresolved apply errors older than the pending grace */
  pendingErrors: number
  oldestPending: string | null
}

export interface HealthMemory {
  /** subscription → since when it is disabled */
  disabledSince: ReadonlyMap<string, number>
  /** subscription → since when it is enabled without a streaming worker */
  notStreamingSince: ReadonlyMap<string, number>
}

export const EMPTY_MEMORY: HealthMemory = { disabledSince: new Map(), notStreamingSince: new Map() }

export interface HealthThresholds {
  /** a disabled subscription is a reason after this long (the resolver re-enables first) */
  disabledMs: number
  /** an enabled subscription that does not stream is a reason after this long */
  notStreamingMs: number
}

/** Thresholds from the resolver's cycle: long enough for it to act, short enough to matter. */
export function thresholdsFor(checkIntervalMs: number): HealthThresholds & { pendingMs: number } {
  return {
    disabledMs: Math.max(3 * checkIntervalMs, 3000),
    notStreamingMs: Math.max(10 * checkIntervalMs, 10_000),
    pendingMs: Math.max(5 * checkIntervalMs, 5000),
  }
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`

export function healthReasons(
  obs: HealthObservation,
  memory: HealthMemory,
  t: HealthThresholds,
): { reasons: string[]; memory: HealthMemory } {
  const reasons: string[] = []
  for (const s of obs.slots) {
    if (s.walStatus === 'lost') {
      reasons.push(
        `replication slot ${s.slot} (node ${s.peer}'s subscription) is lost: its WAL was removed (max_slot_wal_keep_size), node ${s.peer} no longer receives this node's changes; it needs its subscription made anew and the data re-synced (check and repair)`,
      )
    } else if (s.walStatus === 'unreserved') {
      reasons.push(
        `replication slot ${s.slot} (node ${s.peer}'s subscription) is unreserved: its WAL (${s.retainedBytes} bytes retained) will be removed at the next checkpoint unless node ${s.peer} catches up`,
      )
    }
  }
  const disabledSince = new Map<string, number>()
  const notStreamingSince = new Map<string, number>()
  for (const s of obs.subscriptions) {
    if (!s.enabled) {
      const since = memory.disabledSince.get(s.name) ?? obs.atMs
      disabledSince.set(s.name, since)
      if (obs.atMs - since >= t.disabledMs) {
        reasons.push(
          `subscription ${s.name} (from node ${s.peer}) has been disabled for ${seconds(obs.atMs - since)}: node ${s.peer}'s changes do not reach this node`,
        )
      }
      continue
    }
    if (s.streaming) continue
    const since = memory.notStreamingSince.get(s.name) ?? obs.atMs
    notStreamingSince.set(s.name, since)
    if (obs.atMs - since >= t.notStreamingMs) {
      reasons.push(
        `subscription ${s.name} (from node ${s.peer}) is enabled but has not streamed for ${seconds(obs.atMs - since)}: its apply worker keeps failing (see this server's log; a lost slot on node ${s.peer}, or node ${s.peer} unreachable)`,
      )
    }
  }
  if (obs.pendingErrors > 0) {
    reasons.push(
      `${obs.pendingErrors} apply error${obs.pendingErrors === 1 ? '' : 's'} not resolved${obs.oldestPending ? ` (the oldest at ${obs.oldestPending})` : ''}: see /v1/cluster/history`,
    )
  }
  return { reasons, memory: { disabledSince, notStreamingSince } }
}
