// Health that cannot lie: every cycle the node reads what its PostgreSQL says about its
// replication — the peers' slots here (wal_status lost or unreserved), its own subscriptions
// (disabled, or enabled without a worker that streams), apply errors left unresolved — and
// keeps the reasons (health-rules.ts) for /healthz, the status routes and the metrics. Reads
// only; a failed read keeps the last answer and is logged once per change.
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import { type Db, prepared } from './db.js'
import {
  EMPTY_MEMORY,
  type HealthMemory,
  type HealthObservation,
  healthReasons,
  type SlotObservation,
  thresholdsFor,
} from './health-rules.js'
import { PUBLICATION_DRIFTED } from './replicaset.js'
import { isInitialized } from './schema.js'

/**
 * One round trip: the peers' slots here, our subscriptions, unresolved apply errors, and
 * whether the publication drifted from the replicaset (the publication guard's question).
 */
const OBSERVE = prepared(
  'health',
  `
SELECT
  ARRAY(SELECT json_build_object('slot', slot_name::text, 'wal_status', wal_status, 'active', active,
                 'retained', COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8)
          FROM pg_replication_slots WHERE slot_name LIKE 'trktr\\_sub\\_%' ORDER BY slot_name) AS slots,
  ARRAY(SELECT json_build_object('name', s.subname::text, 'enabled', s.subenabled, 'streaming',
                 EXISTS (SELECT 1 FROM pg_stat_subscription w
                          WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL
                            AND w.received_lsn IS NOT NULL AND w.received_lsn <> '0/0'::pg_lsn))
          FROM pg_subscription s
         WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND s.subname LIKE 'trktr\\_sub\\_%' ORDER BY s.subname) AS subs,
  p.n, p.oldest, ${PUBLICATION_DRIFTED} AS drifted
FROM (SELECT count(*)::int AS n, min(occurred)::text AS oldest FROM trktr.history
       WHERE resolved IS NULL AND occurred < now() - $1::int8 * interval '1 millisecond') p`,
)

const NAME = /^trktr_sub_(\d+)_(\d+)$/

export interface HealthWatchInit {
  db: Db
  nodeId: number
  log: Logger
  intervalMs: number
  now?: () => number
  /** whether the node is initialised (default: ask PostgreSQL) */
  initialized?: () => Promise<boolean>
  /** told when the publication no longer holds exactly the replicaset (the guard repairs it) */
  onDrift?: () => void
}

type State = { kind: 'stopped' } | { kind: 'running'; timer: Beat }

export class HealthWatch {
  private readonly init: HealthWatchInit
  private readonly log: Logger
  private state: State = { kind: 'stopped' }
  private busy: Promise<void> | undefined
  private memory: HealthMemory = EMPTY_MEMORY
  private last: string[] = []
  private slotsSeen: SlotObservation[] = []
  private failing = false

  constructor(init: HealthWatchInit) {
    this.init = init
    this.log = init.log.child({ component: 'health' })
  }

  start(): void {
    if (this.state.kind === 'running') return
    const timer = onBeat(this.init.intervalMs, () => void this.observe(), { unref: true })
    this.state = { kind: 'running', timer }
    void this.observe()
  }

  async stop(): Promise<void> {
    if (this.state.kind === 'running') this.state.timer.stop()
    this.state = { kind: 'stopped' }
    await this.busy
  }

  reasons(): string[] {
    return [...this.last]
  }

  /** The peers' slots on this server as last seen (metrics). */
  slots(): SlotObservation[] {
    return [...this.slotsSeen]
  }

  /** Look now (or wait for the look in progress). */
  async observe(): Promise<void> {
    if (this.busy) return await this.busy
    this.busy = this.run()
      .catch((err: Error) => {
        if (!this.failing) this.log.warn({ err: err.message }, 'cannot read replication health')
        this.failing = true
      })
      .finally(() => {
        this.busy = undefined
      })
    await this.busy
  }

  private async run(): Promise<void> {
    const { db, nodeId } = this.init
    if (!(await (this.init.initialized?.() ?? isInitialized(db)))) return
    const t = thresholdsFor(this.init.intervalMs)
    const [row] = await db.query<{
      slots: Array<{ slot: string; wal_status: string | null; active: boolean; retained: number }>
      subs: Array<{ name: string; enabled: boolean; streaming: boolean }>
      n: number
      oldest: string | null
      drifted: boolean
    }>(OBSERVE, [t.pendingMs])
    if (row?.drifted) this.init.onDrift?.()
    const { slots = [], subs = [] } = row ?? {}
    const obs: HealthObservation = {
      atMs: (this.init.now ?? Date.now)(),
      // the slots peers' subscriptions use here: trktr_sub_<peer>_<this node>
      slots: slots.flatMap((s) => {
        const m = NAME.exec(s.slot)
        if (!m || Number(m[2]) !== nodeId) return []
        return [
          {
            slot: s.slot,
            peer: Number(m[1]),
            walStatus: s.wal_status,
            active: s.active,
            retainedBytes: Number(s.retained),
          },
        ]
      }),
      subscriptions: subs.flatMap((s) => {
        const m = NAME.exec(s.name)
        if (!m || Number(m[1]) !== nodeId) return []
        return [{ name: s.name, peer: Number(m[2]), enabled: s.enabled, streaming: s.streaming }]
      }),
      pendingErrors: row?.n ?? 0,
      oldestPending: row?.oldest ?? null,
    }
    const r = healthReasons(obs, this.memory, t)
    this.memory = r.memory
    this.slotsSeen = obs.slots
    this.failing = false
    const added = r.reasons.filter((x) => !this.last.includes(x) && !sameKind(x, this.last))
    for (const reason of added) this.log.error({ reason }, 'replication is not healthy')
    if (this.last.length > 0 && r.reasons.length === 0) this.log.info('replication healthy again')
    this.last = r.reasons
  }
}

/** The same reason with a new duration ("disabled for 3.3 s" → "for 3.6 s") is not news. */
function sameKind(reason: string, previous: string[]): boolean {
  const stem = reason.replace(/\d+(\.\d+)? s\b/g, '')
  return previous.some((p) => p.replace(/\d+(\.\d+)? s\b/g, '') === stem)
}
