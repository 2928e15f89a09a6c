// The publication must hold exactly the replicaset. Someone with the rights can change it by
// hand (DROP PUBLICATION trktr_pub, ALTER PUBLICATION ... DROP TABLE); then rows stop
// replicating without any error on this node. Every cycle the guard compares the two and
// repairs the publication, loudly. A dropped publication also breaks every peer's slot here for
// good (PostgreSQL 17 cannot decode past it: "publication does not exist" forever), so the
// peers are told to make their subscriptions anew; rows written in between did not reach them,
// and this node says so in its health until it restarts (or a check clears it).
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type { Db } from './db.js'
import {
  notifyPublicationChanged,
  type PublicationRepair,
  repairPublication,
} from './replicaset.js'
import { isInitialized } from './schema.js'

export interface PublicationGuardInit {
  db: Db
  log: Logger
  intervalMs: number
  /** whether the node is initialised (default: ask PostgreSQL) */
  initialized?: () => Promise<boolean>
  /** told after a repair (mesh mode asks the peers to subscribe anew after a re-creation) */
  onRepaired?: (r: PublicationRepair) => void
}

type State = { kind: 'stopped' } | { kind: 'running'; timer: Beat }

const MAX_PROBLEMS = 20
/**
 * The health watch's query tells the guard when the publication drifted (local.ts); the
 * guard's own look comes every this many of its cycles, a fallback if that query keeps failing.
 */
export const GUARD_FALLBACK_CYCLES = 30

export class PublicationGuard {
  private readonly init: PublicationGuardInit
  private readonly log: Logger
  private state: State = { kind: 'stopped' }
  private busy: Promise<void> | undefined
  private readonly problems: string[] = []

  constructor(init: PublicationGuardInit) {
    this.init = init
    this.log = init.log.child({ component: 'publication-guard' })
  }

  start(): void {
    if (this.state.kind === 'running') return
    const timer = onBeat(this.init.intervalMs, () => void this.check(), { unref: true })
    this.state = { kind: 'running', timer }
  }

  async stop(): Promise<void> {
    if (this.state.kind === 'running') this.state.timer.stop()
    this.state = { kind: 'stopped' }
    await this.busy
  }

  /** What went wrong with the publication since this arbiter started (health reasons). */
  reasons(): string[] {
    return [...this.problems]
  }

  /** Compare and repair now (or join the check running); returns what was repaired. */
  async check(): Promise<PublicationRepair | undefined> {
    if (this.busy) {
      await this.busy
      return undefined
    }
    let out: PublicationRepair | undefined
    this.busy = this.run()
      .then((r) => {
        out = r
      })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'publication check failed'))
      .finally(() => {
        this.busy = undefined
      })
    await this.busy
    return out
  }

  private async run(): Promise<PublicationRepair | undefined> {
    const { db } = this.init
    if (!(await (this.init.initialized?.() ?? isInitialized(db)))) return undefined
    const r = await repairPublication(db)
    if (!r.recreated && r.added.length === 0 && r.removed.length === 0) return r
    const at = new Date().toISOString()
    if (r.recreated) {
      this.log.error(
        { tables: r.added },
        'the publication trktr_pub was dropped by hand: created it again with the replicated tables; the peers subscribe anew, rows written here meanwhile did not reach them',
      )
      this.problems.push(
        `the publication trktr_pub was dropped by hand and re-created at ${at}: rows written to replicated tables on this node before then may be missing on the peers`,
      )
      await notifyPublicationChanged(db, 'recreated')
    } else {
      if (r.added.length > 0) {
        this.log.error(
          { tables: r.added },
          'replicated tables were missing from the publication (changed by hand): added them again; rows written to them meanwhile did not reach the peers',
        )
        this.problems.push(
          `tables ${r.added.join(', ')} were taken out of the publication by hand (put back at ${at}): rows written to them meanwhile may be missing on the peers`,
        )
      }
      if (r.removed.length > 0) {
        this.log.warn(
          { tables: r.removed },
          'tables not in the replicaset were in the publication (added by hand): removed them',
        )
      }
      await notifyPublicationChanged(db)
    }
    this.problems.splice(0, Math.max(0, this.problems.length - MAX_PROBLEMS))
    this.init.onRepaired?.(r)
    return r
  }
}
