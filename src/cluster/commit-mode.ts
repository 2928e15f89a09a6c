// The cluster's commit mode (issue 15): async, or sync with an optional quorum. The config
// file's `commit` is where a node starts; a cluster call (PUT /v1/cluster/commit) sets one mode
// for every member at once, stored in trktr.cluster with the time it was set, and that stored
// setting wins over the file from then on. Members carry theirs in every heartbeat: a member
// that missed the call (down, or its answer lost) adopts the newer one when it hears it.
// This module owns the SyncMode loop: it runs only while the mode is sync.
import type { Logger } from '../log.js'
import type * as cs from '../postgres/cluster-state.js'
import type { LocalNode } from '../postgres/local.js'
import type { Member } from './membership.js'
import { answerOf } from './rpc-results.js'
import { SyncMode } from './sync-mode.js'

export type CommitSetting = cs.CommitSetting

export interface CommitModeInit {
  /** where the setting is kept, and the server's synchronous_standby_names */
  local: Pick<LocalNode, 'cluster' | 'standbys'>
  nodeId: number
  members: () => Member[]
  log: Logger
  /** from the config file: the mode until a cluster call sets one (changed 0) */
  configured: { mode: 'async' | 'sync'; quorum?: number }
  /** whether the node's trktr schema exists (the reconciler creates it on its first pass) */
  initialized: () => Promise<boolean>
}

const INIT_POLL_MS = 250
const RETRY_MS = 1000

/** Whether `theirs` replaces `mine`: set later (the newest call wins everywhere). */
export function newer(theirs: CommitSetting | undefined, mine: CommitSetting): boolean {
  return theirs !== undefined && theirs.changed > mine.changed
}

/** Health reason when a member runs another mode than this node (a config file left alone). */
export function modeMismatch(mine: CommitSetting, members: Member[]): string[] {
  return members
    .filter((m) => m.commit && m.state !== 'dead' && m.commit.mode !== mine.mode)
    .map(
      (m) =>
        `commit mode: node ${m.nodeId} runs ${m.commit?.mode}, this node ${mine.mode} (set it for the cluster with PUT /v1/cluster/commit)`,
    )
}

export class CommitMode {
  private readonly init: CommitModeInit
  private readonly log: Logger
  private setting: CommitSetting
  private sync: SyncMode | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private started = false
  private retry: NodeJS.Timeout | undefined
  /** degraded time of sync loops that ran before the current one */
  private degradedBefore = 0
  private cyclesBefore = 0

  constructor(init: CommitModeInit) {
    this.init = init
    this.log = init.log.child({ component: 'commit-mode' })
    const { mode, quorum } = init.configured
    this.setting = { mode, ...(quorum === undefined ? {} : { quorum }), changed: 0 }
  }

  /** Loads the stored setting once the node is initialised, then runs it (in the background). */
  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    // adoptions wait behind the load: a setting heard first is compared with the stored one
    this.queue = this.load().catch((err: Error) =>
      this.log.error({ err: err.message }, 'commit mode: could not load the stored setting'),
    )
  }

  private async load(): Promise<void> {
    while (this.started && !(await this.init.initialized().catch(() => false)))
      await new Promise((r) => setTimeout(r, INIT_POLL_MS))
    if (!this.started) return
    const stored = await this.init.local.cluster.commitSetting()
    if (stored) {
      const file = this.init.configured
      if (stored.mode !== file.mode || stored.quorum !== file.quorum)
        this.log.warn(
          { stored, configured: file },
          'commit mode: the cluster setting (set by a cluster call) wins over the config file',
        )
      this.setting = stored
    }
    await this.apply()
  }

  async stop(): Promise<void> {
    this.started = false
    clearTimeout(this.retry)
    this.retry = undefined
    await this.queue.catch(() => undefined)
    await this.sync?.stop()
    this.sync = undefined
  }

  current(): CommitSetting {
    return { ...this.setting }
  }

  /** Store and run a newer setting (a cluster call, or heard from a member); one at a time. */
  adopt(s: CommitSetting, from: string): Promise<boolean> {
    const run = this.queue.then(async () => {
      if (!newer(s, this.setting)) return false
      const stored = await this.init.local.cluster.storeCommitSetting(s)
      if (!stored) return false
      const was = this.setting
      this.setting = { ...s }
      this.log.warn({ was, now: s, from }, `commit mode: now ${describe(s)} (from ${from})`)
      if (this.started) await this.apply()
      return true
    })
    this.queue = run.catch((err: Error) => {
      // PostgreSQL down, say: try again, since the member's heartbeat will not change to ask
      this.log.warn({ err: err.message, from }, 'commit mode: could not adopt; retrying in 1 s')
      if (this.started && !this.retry)
        this.retry = setTimeout(() => {
          this.retry = undefined
          void this.adopt(s, from).catch(() => undefined)
        }, RETRY_MS)
    })
    return run
  }

  /** Status and ctl: the mode, and in sync mode the peers waited for and those left out. */
  view(): {
    mode: 'async' | 'sync'
    quorum: number | null
    changed: number
    standbys: number[]
    outside: number[]
    degraded: boolean
  } {
    const v = this.sync?.view()
    return {
      mode: this.setting.mode,
      quorum: this.setting.quorum ?? null,
      changed: this.setting.changed,
      standbys: v?.standbys ?? [],
      outside: v?.outside ?? [],
      degraded: v?.degraded ?? false,
    }
  }

  /** For /metrics. */
  metrics(): {
    sync: boolean
    standbys: number[]
    degraded: boolean
    degradedSeconds: number
    cyclesBroken: number
  } {
    const v = this.sync?.view()
    return {
      sync: this.setting.mode === 'sync',
      standbys: v?.standbys ?? [],
      degraded: v?.degraded ?? false,
      degradedSeconds: this.degradedBefore + (v?.degradedSeconds ?? 0),
      cyclesBroken: this.cyclesBefore + (v?.cyclesBroken ?? 0),
    }
  }

  /** Can this node run `mode`? A reason when it cannot (round one of a cluster call). */
  async check(mode: 'async' | 'sync'): Promise<string | undefined> {
    if (mode === 'async') return undefined
    return (await this.init.local.standbys.maySetStandbys())
      ? undefined
      : 'the arbiter role may not ALTER SYSTEM synchronous_standby_names or run pg_reload_conf() (see README, Synchronous mode)'
  }

  /**
   * Set the mode on every member, or on none: every member must be alive and say it can
   * (round one); then each stores and runs it (round two). A member whose round-two answer is
   * lost adopts the setting from this node's heartbeats.
   */
  async setForCluster(
    want: { mode: 'async' | 'sync'; quorum?: number },
    port: CommitCallPort,
  ): Promise<CommitAnswer> {
    const quorum = want.quorum ?? null
    const base = { mode: want.mode, quorum }
    const cur = this.setting
    if (cur.mode === want.mode && (cur.quorum ?? null) === quorum)
      return { outcome: 'unchanged', ...base, changed: cur.changed, nodes: [] }
    const members = port.members()
    const abort = (reason: string): CommitAnswer => {
      this.log.warn({ want, reason }, 'commit mode change aborted')
      return { outcome: 'aborted', ...base, changed: cur.changed, reason, nodes: [] }
    }
    const down = members.filter((m) => m.state === 'dead' || !m.postgresUp || m.duplicate)
    if (down.length > 0)
      return abort(
        `nodes ${down.map((m) => m.nodeId).join(', ')} cannot answer: the commit mode changes on every node or on none`,
      )
    const local = await this.check(want.mode)
    if (local) return abort(`node ${this.init.nodeId}: ${local}`)
    const checks = await Promise.all(
      members.map(async (m) => {
        const r = answerOf(
          'commit.check',
          await port.request(m, 'commit.check', { mode: want.mode }),
        )
        if (!r.ok) return `node ${m.nodeId}: ${r.error}`
        return r.result.reason === undefined ? undefined : `node ${m.nodeId}: ${r.result.reason}`
      }),
    )
    const refused = checks.filter((c): c is string => c !== undefined)
    if (refused.length > 0) return abort(refused.join('; '))
    const setting: CommitSetting = {
      mode: want.mode,
      ...(want.quorum ? { quorum: want.quorum } : {}),
      changed: Math.max(Date.now(), cur.changed + 1),
    }
    await this.adopt(setting, 'a cluster call')
    const nodes = await Promise.all(
      members.map(async (m) => {
        const r = await port.request(m, 'commit.set', { setting })
        return r.ok
          ? { node: m.nodeId, ok: true }
          : { node: m.nodeId, ok: false, error: r.error.message }
      }),
    )
    nodes.unshift({ node: this.init.nodeId, ok: true })
    return { outcome: 'committed', ...base, changed: setting.changed, nodes }
  }

  healthReasons(): string[] {
    return [
      ...(this.sync?.healthReasons() ?? []),
      ...modeMismatch(this.setting, this.init.members()),
    ]
  }

  private async apply(): Promise<void> {
    const { local, nodeId, members, log } = this.init
    if (this.sync) {
      await this.sync.stop()
      this.degradedBefore += this.sync.view().degradedSeconds
      this.cyclesBefore += this.sync.view().cyclesBroken
    }
    this.sync = undefined
    if (this.setting.mode === 'sync') {
      const quorum = this.setting.quorum
      this.sync = new SyncMode({
        standbys: local.standbys,
        nodeId,
        members,
        log,
        ...(quorum ? { quorum } : {}),
      })
      await this.sync.start()
    } else {
      await SyncMode.release(local.standbys, log).catch((err: Error) =>
        this.log.warn({ err: err.message }, 'could not read synchronous_standby_names'),
      )
    }
  }
}

export function describe(s: Pick<CommitSetting, 'mode' | 'quorum'>): string {
  if (s.mode === 'async') return 'async'
  if (!s.quorum) return 'sync (every live peer)'
  return `sync (any ${s.quorum} live peer${s.quorum === 1 ? '' : 's'})`
}

/** What a cluster call needs of the mesh. */
export interface CommitCallPort {
  /** every member that is not removed */
  members(): Member[]
  request(
    m: Member,
    method: 'commit.check' | 'commit.set',
    params: unknown,
  ): Promise<{ ok: true; result: unknown } | { ok: false; error: { message: string } }>
}

export interface CommitAnswer {
  outcome: 'committed' | 'unchanged' | 'aborted'
  mode: 'async' | 'sync'
  quorum: number | null
  changed: number
  reason?: string
  nodes: Array<{ node: number; ok: boolean; error?: string }>
}
