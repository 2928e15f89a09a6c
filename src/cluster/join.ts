import type { JoinMode } from '../config/types.js'
import { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { FenceSet } from '../postgres/fence.js'
import { formatRelation, type RelationName } from '../postgres/ident.js'
import * as jc from '../postgres/join-copy.js'
import type { LocalNode } from '../postgres/local.js'
import { subscriptionName } from '../postgres/subscriptions.js'
import { leftOut, mustJoin } from './join-decide.js'
import { settledMembers, type WaitContext, waitDonorApplied, waitTurn } from './join-waits.js'
import type { Member } from './membership.js'

export type JoinPhase =
  | 'slots'
  | 'subscribing'
  | 'waiting'
  | 'snapshot'
  | 'copying'
  | 'enabling'
  | 'done'

export interface JoinProgress {
  phase: JoinPhase
  donor: number | undefined
  attempt: number
  tables: number
  tablesDone: number
  rowsCopied: number
  /** the donor's estimate (pg_class.reltuples) */
  rowsEstimated: number
  percent: number
  lastError?: string
  /** the donor's writers' wait on the SHARE lock in the last snapshot (ms) */
  donorPauseMs?: number
}

export interface JoinCopyInit {
  local: LocalNode
  nodeId: number
  log: Logger
  /** live ready members to copy from and subscribe to (settled: stable, PostgreSQL up) */
  candidates: () => Member[]
  /** every other live node of the cluster, whatever its join state (not removed) */
  peers: () => Member[]
  /** a member's view of the cluster (members.list) */
  viewOf?: WaitContext['viewOf']
  /** tables copied at once */
  parallel?: number
  /** how long the donor may take to apply the other members' changes up to our slots */
  donorCatchUpMs?: number
  onProgress?: (p: JoinProgress) => void
  /** test-only: wait this long before copying */
  pauseMs?: number
}

export interface RunOptions {
  /** join mode (a refusal of rows found here applies to "empty-only") */
  mode: JoinMode
  /** a ready node copied again (ctl resync): the members subscribe here already */
  resync: boolean
  /** empty the tables before the slots are made (mode "copy", or a copy that starts over) */
  clear: boolean
}

/** One node's copy of the cluster's data; run() is one attempt of the whole procedure. */
export class JoinCopy {
  private readonly init: JoinCopyInit
  private readonly log: Logger
  progress: JoinProgress = {
    phase: 'subscribing',
    donor: undefined,
    attempt: 0,
    tables: 0,
    tablesDone: 0,
    rowsCopied: 0,
    rowsEstimated: 0,
    percent: 0,
  }

  /** local writers to the replicated tables wait while the copy runs */
  private readonly fences: FenceSet
  /** the members whose slots here were in place before the fence went up */
  private slotted = new Set<number>()
  /** nodes already named as having no slot here */
  private readonly warned = new Set<number>()

  constructor(init: JoinCopyInit) {
    this.init = init
    this.log = init.log.child({ component: 'join' })
    this.fences = init.local.fenceSet()
  }

  /** After the copy: the members' slots are in place, so local writers go on at once. */
  async release(): Promise<void> {
    await this.lowerFences()
  }

  /**
   * Raised fences whose session is gone (this node's PostgreSQL restarted): local writers are
   * no longer held, so the copy must start over from its first step, the tables emptied.
   */
  async fenceLost(): Promise<boolean> {
    return this.fences.tables.length > 0 && !(await this.fences.holding())
  }

  async lowerFences(): Promise<void> {
    const n = this.fences.tables.length
    const left = await this.fences.lower()
    if (n > 0) this.log.info({ tables: n }, 'local writers to the replicated tables released')
    // they hold no one back; the arbiter's next start drops them
    if (left.length > 0)
      this.log.warn({ tables: left.map(formatRelation) }, 'fence triggers left on tables')
  }

  /** Fence every replicated table here, if the copy can write past the fence. */
  private async fence(tables: RelationName[]): Promise<void> {
    if (!(await this.init.local.joinCopy.canSetReplicaRole())) {
      this.log.warn(
        'the arbiter role may not set session_replication_role: local writers are not fenced during the copy (GRANT SET ON PARAMETER session_replication_role)',
      )
      return
    }
    const failed = await this.fences.raise(tables)
    for (const f of failed)
      this.log.warn(
        { table: formatRelation(f.rel), err: f.err },
        'cannot fence a table during the copy',
      )
  }

  /**
   * Before the fence goes up (once per run of the copy loop): the tables emptied if asked, the
   * members' slots made here, then the fence, then the tables checked empty. In this order
   * nothing waits on a fenced writer, and every local write that is not in the copy's past is
   * in every member's slot: a row found here now may have committed before a slot began (it
   * would never reach that member), so a join refuses it ("empty-only") or starts over.
   */
  private async prepare(members: Member[], tables: RelationName[], opts: RunOptions) {
    const { local, nodeId } = this.init
    if (opts.clear && !opts.resync) await local.joinSlots.clearTables(tables, 'trktr_join_0')
    // every live node gets its slot here, not only the ready members: a node copying or
    // about to copy at the same time subscribes here once ready, from this slot
    const ids = [...new Set([...members, ...this.init.peers()].map((m) => m.nodeId))]
    const names = ids.map((id) => subscriptionName(id, nodeId))
    const made = await local.joinSlots.ensureMemberSlots(names, !opts.resync)
    this.slotted = new Set(ids)
    this.log.info(
      { members: [...this.slotted], made },
      "the members' slots on this node are in place: fencing local writers",
    )
    await this.fence(tables)
    if (opts.resync) return
    const rows = await local.joinCopy.occupied(tables)
    if (rows.length === 0) return
    await this.lowerFences()
    const list = rows.map((o) => `${formatRelation(o.rel)} holds ${o.rows} rows`).join(', ')
    if (opts.mode === 'empty-only' && !opts.clear) {
      throw new TraktorError(
        'ERR_JOIN_REFUSED',
        `cannot join with the cluster's data: rows were written here as the join began (${list}); empty the tables, or set join to "copy" or "no-copy"`,
      )
    }
    throw new Error(`rows were written here while the join began (${list}): starting over`)
  }

  private set(p: Partial<JoinProgress>): void {
    Object.assign(this.progress, p)
    const { rowsCopied, rowsEstimated, phase } = this.progress
    this.progress.percent =
      phase === 'done'
        ? 100
        : Math.min(99, Math.floor((100 * rowsCopied) / Math.max(1, rowsEstimated)))
    this.init.onProgress?.(this.progress)
  }

  async run(signal: AbortSignal, opts: RunOptions): Promise<void> {
    const { local, nodeId } = this.init
    const started = Date.now()
    this.set({ phase: 'slots', attempt: this.progress.attempt + 1, rowsCopied: 0 })
    const tables = await local.joinCopy.replicatedTables()
    this.set({ tables: tables.length, tablesDone: 0 })
    // one node copies at a time: a copy that ends while another runs makes that one start over
    if (this.fences.tables.length === 0) await waitTurn(this.waits(), signal)
    const members = await settledMembers(this.waits(), signal)
    const donor = members[0]
    if (!donor) throw new Error('no live ready member to copy from')
    // local writers wait from the first attempt that found a donor on, until the copy is done
    if (this.fences.tables.length === 0) {
      await local.joinCopy.writeMarker('copying', donor.nodeId)
      await this.prepare(members, tables, opts)
    }
    this.warnUnslotted(members)
    // from here on local writers wait (a row written before refuses an "empty-only" join)
    this.set({ phase: 'subscribing', donor: donor.nodeId, tables: tables.length, tablesDone: 0 })
    this.log.info(
      { donor: donor.nodeId, members: members.map((m) => m.nodeId), tables: tables.length },
      'joining with the cluster data: subscribing (disabled) to every live member',
    )
    // fresh subscriptions, disabled: their slots keep every change from now on
    for (const s of await local.subscriptions()) await local.unsubscribe(s.peer)
    // side by side: each slot on a member waits for that member's running transactions
    const slotAt = new Map<number, string>()
    await Promise.all(
      members.map(async (m) => {
        const r = await local.subscribe(m.nodeId, m.postgres, { enabled: false })
        slotAt.set(m.nodeId, r.slotLsn ?? '0/0')
      }),
    )
    signal.throwIfAborted()
    // the donor must hold every change of each other member up to where our slot there starts
    this.set({ phase: 'waiting' })
    if (opts.resync) await this.waitDonorAppliedOurs(donor, signal)
    const others = members.filter((m) => m.nodeId !== donor.nodeId)
    const donorConn = local.peerConninfo(donor.postgres)
    const at = { nodeId: donor.nodeId, conn: donorConn }
    const caughtUp = (m: Member) => {
      const conn = local.peerConninfo(m.postgres)
      return waitDonorApplied(this.waits(), at, m.nodeId, conn, slotAt.get(m.nodeId), signal)
    }
    await Promise.all(others.map(caughtUp))
    this.set({ phase: 'snapshot' })
    const app = `traktor-${nodeId}-join`
    const exported = await jc.exportSnapshot({
      conninfo: donorConn,
      appName: app,
      tables,
      subscriptions: others.map((m) => subscriptionName(donor.nodeId, m.nodeId)),
      signal,
    })
    const point = exported.point
    this.log.info(
      {
        donor: donor.nodeId,
        walLsn: point.walLsn,
        pauseMs: point.pauseMs,
        lockRetries: point.lockRetries,
      },
      'snapshot exported on the donor',
    )
    try {
      this.set({
        phase: 'copying',
        donorPauseMs: point.pauseMs,
        rowsEstimated: point.rowsEstimated,
      })
      if (this.init.pauseMs) await new Promise((r) => setTimeout(r, this.init.pauseMs))
      await this.copyAll(tables, donorConn, point.snapshot, app, !opts.resync, signal)
    } finally {
      await exported.release()
    }
    // a node that became ready meanwhile wrote rows this copy has not got, and has no
    // subscription from here: start over with it among the members
    const appeared = leftOut(this.init.peers(), members)
    if (appeared.length > 0)
      throw new Error(`node ${appeared.join(', ')} became ready during the copy: starting over`)
    this.set({ phase: 'enabling' })
    // row-level resolution's triggers must be in place before the first change applies
    await local.lwwTriggers.ensure()
    await local.joinCopy.advanceAndEnable([
      { subscription: subscriptionName(nodeId, donor.nodeId), lsn: point.walLsn },
      ...others.map((m) => ({
        subscription: subscriptionName(nodeId, m.nodeId),
        lsn: point.origins.get(subscriptionName(donor.nodeId, m.nodeId)) ?? null,
      })),
    ])
    await local.joinCopy.writeMarker('done', donor.nodeId)
    this.set({ phase: 'done' })
    this.log.info(
      {
        donor: donor.nodeId,
        tables: tables.length,
        rows: this.progress.rowsCopied,
        ms: Date.now() - started,
        donorPauseMs: point.pauseMs,
      },
      'joined with the cluster data',
    )
  }

  private waits(): WaitContext {
    const { nodeId, candidates, peers, donorCatchUpMs, viewOf } = this.init
    return {
      nodeId,
      log: this.log,
      candidates,
      peers,
      viewOf,
      donorCatchUpMs,
      waiting: () => this.set({ phase: 'waiting' }),
    }
  }

  /**
   * A node first seen after the fence went up has no slot here, and none can be made now: a
   * new slot waits for every transaction holding an xid, the fence's own among them. A node
   * that joins after this one needs none (its own join subscribes here and waits for its donor
   * to catch up); a member that was ready before (seen late) gets its slot when it subscribes,
   * and a local write between the end of this copy and then does not reach it: said loudly,
   * once per node, for the consistency check to confirm.
   */
  private warnUnslotted(nodes: Member[]): void {
    const late = nodes
      .filter((m) => mustJoin(m) && !this.slotted.has(m.nodeId) && !this.warned.has(m.nodeId))
      .map((m) => m.nodeId)
    if (late.length === 0) return
    for (const id of late) this.warned.add(id)
    this.log.error(
      { nodes: late },
      "ready members first seen after this node fenced its writers have no slot here: this node's writes between its copy and their subscriptions may not reach them; run traktor ctl check once it is ready",
    )
  }

  /**
   * A resync: this node's own writes before the fence reach the members through their slots
   * here, and would be lost here if the donor's snapshot missed them; so the donor applies
   * them first (its slot here flushed past this node's WAL position with the fence up).
   */
  private async waitDonorAppliedOurs(donor: Member, signal: AbortSignal): Promise<void> {
    const { local, nodeId } = this.init
    const lsn = await local.joinCopy.walInsertLsn()
    const slot = subscriptionName(donor.nodeId, nodeId)
    const [present] = await local.joinCopy.slotsPresent([slot])
    if (present === undefined) {
      this.log.warn(
        { donor: donor.nodeId, slot },
        "the donor has no slot here: it cannot have this node's last writes",
      )
      return
    }
    const at = { nodeId: donor.nodeId, conn: local.peerConninfo(donor.postgres) }
    await waitDonorApplied(this.waits(), at, nodeId, local.conninfo, lsn, signal)
  }

  private async copyAll(
    tables: RelationName[],
    donorConn: string,
    snapshot: string,
    app: string,
    truncate: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const queue = [...tables]
    let lastLogged = 0
    const worker = async (slot: number, signal: AbortSignal) => {
      for (let rel = queue.shift(); rel; rel = queue.shift()) {
        signal.throwIfAborted()
        const t0 = Date.now()
        const r = await jc.copyTable({
          donorConninfo: donorConn,
          localConninfo: this.init.local.conninfo,
          appName: app,
          snapshot,
          rel,
          columns: await this.init.local.joinCopy.copyColumns(rel),
          origin: `trktr_join_${slot}`,
          clear: true,
          truncate,
          signal,
          onRows: (n) => {
            this.set({ rowsCopied: this.progress.rowsCopied + n })
            if (this.progress.percent >= lastLogged + 10) {
              lastLogged = this.progress.percent - (this.progress.percent % 10)
              this.log.info({ ...this.progress }, 'join copy progress')
            }
          },
        })
        this.set({ tablesDone: this.progress.tablesDone + 1 })
        this.log.info(
          {
            table: formatRelation(rel),
            rows: r.rows,
            ms: Date.now() - t0,
            replicaRole: r.replicaRole,
            binary: r.binary,
          },
          'table copied from the donor',
        )
      }
    }
    // one table failing stops the others: the attempt ends with no copy still writing
    const stop = new AbortController()
    const onAbort = () => stop.abort()
    signal.addEventListener('abort', onAbort)
    const n = Math.max(1, Math.min(this.init.parallel ?? 2, tables.length))
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        worker(i, stop.signal).catch((err: unknown) => {
          stop.abort()
          throw err
        }),
      ),
    )
    signal.removeEventListener('abort', onAbort)
    const failed = results.find((r) => r.status === 'rejected')
    if (failed) throw failed.reason
  }
}
