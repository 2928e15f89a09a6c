// Is this arbiter cut off from its cluster? Two ways to be: the mesh's own verdict (somewhere to
// go in the bootstrap list, nobody reached; see src/mesh/isolation.ts), or it had members and
// has heard none for isolatedAfterMs (a founder that bootstraps to itself has no bootstrap
// peer to miss, only members). Either way /healthz answers 503 "degraded", cluster status is
// unhealthy, traktor_mesh_isolated is 1, and one warn line says so when it starts and one info
// line when it ends. A lone node that never had a member is not isolated: it is a cluster of one.
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type { MeshIsolation } from '../mesh/types.js'
import type { MemberState } from './detector.js'

const TICK_MS = 500

export interface HeardMember {
  nodeId: number
  state: MemberState
  lastHeardMs: number
}

/** Isolated by membership: members known, none alive, none heard for isolatedAfterMs. */
export function memberReach(
  members: readonly HeardMember[],
  now: number,
  isolatedAfterMs: number,
): MeshIsolation {
  if (members.length === 0 || members.some((m) => m.state === 'alive')) return { isolated: false }
  const latest = Math.max(...members.map((m) => m.lastHeardMs))
  const since = latest + isolatedAfterMs
  if (now < since) return { isolated: false }
  const nodes = members.map((m) => m.nodeId).sort((a, b) => a - b)
  return {
    isolated: true,
    since,
    reason: `no member heard since ${new Date(latest).toISOString()} (nodes ${nodes.join(', ')})`,
  }
}

/** The mesh's verdict first (it names the dial error), else the members'. */
export function combine(mesh: MeshIsolation, members: MeshIsolation): MeshIsolation {
  if (mesh.isolated) return mesh
  if (!members.isolated) return mesh
  const last = mesh.lastDialError
  return last === undefined
    ? members
    : { ...members, reason: `${members.reason}; last dial error: ${last}`, lastDialError: last }
}

/** The words /healthz and cluster status use. */
export function isolationReason(i: MeshIsolation): string {
  return `isolated from the mesh: ${i.reason ?? 'no peer reached'}`
}

export interface IsolationWatchInit {
  log: Logger
  /** the verdict now */
  check: () => MeshIsolation
}

/** Logs when this node becomes isolated and when it is no longer. */
export class IsolationWatch {
  private timer: Beat | undefined
  private isolatedSince: number | undefined
  private readonly log: Logger

  constructor(private readonly init: IsolationWatchInit) {
    this.log = init.log.child({ component: 'mesh' })
  }

  start(): void {
    if (this.timer) return
    this.timer = onBeat(TICK_MS, () => this.tick(), { unref: true })
  }

  stop(): void {
    this.timer?.stop()
    this.timer = undefined
  }

  private tick(): void {
    const i = this.init.check()
    if (i.isolated && this.isolatedSince === undefined) {
      this.isolatedSince = i.since ?? Date.now()
      this.log.warn(
        { reason: i.reason, lastDialError: i.lastDialError, since: new Date(this.isolatedSince) },
        'isolated from the mesh',
      )
    } else if (!i.isolated && this.isolatedSince !== undefined) {
      this.log.info({ isolatedMs: Date.now() - this.isolatedSince }, 'reached the mesh again')
      this.isolatedSince = undefined
    }
  }
}
