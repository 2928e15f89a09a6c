// The cluster's history of conflicts and resolutions: every node's own rows, asked live, and
// completed from the conflict events members gossip for the nodes that do not answer. A
// row-level conflict recorded by several nodes is one row, with every node that saw it.
import type { Logger } from '../log.js'
import type { ConflictEvent } from '../mesh/codec.js'
import type { HistoryEntry } from '../postgres/history.js'
import type { Member } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import { answerOf } from './rpc-results.js'

const FANOUT_TIMEOUT_MS = 2000
const MAX_REMOTE_EVENTS = 1000

export type ClusterHistoryEntry = HistoryEntry & { node: number; nodes?: number[] }

export interface ClusterHistoryInit {
  nodeId: number
  /** this node's own history */
  own: () => Promise<HistoryEntry[]>
  mesh: Pick<MeshPort, 'request' | 'publish'>
  members: () => Member[]
  log: Logger
}

export class ClusterHistory {
  private readonly init: ClusterHistoryInit
  private readonly remoteEvents: Array<ConflictEvent & { receivedMs: number }> = []

  constructor(init: ClusterHistoryInit) {
    this.init = init
  }

  /** Every node's resolutions, newest first. */
  async all(): Promise<ClusterHistoryEntry[]> {
    const { nodeId } = this.init
    const out: Array<HistoryEntry & { node: number }> = (await this.init.own()).map((h) => ({
      ...h,
      node: nodeId,
    }))
    const answered = new Set([nodeId])
    const live = this.init.members().filter((m) => m.state !== 'dead')
    const req = { method: 'history.list', params: {} }
    for (const { member, r } of await fanOut(this.init.mesh, live, req, FANOUT_TIMEOUT_MS)) {
      const a = answerOf('history.list', r)
      if (!a.ok) continue
      answered.add(member.nodeId)
      for (const h of a.result as unknown as HistoryEntry[]) out.push({ ...h, node: member.nodeId })
    }
    for (const e of this.remoteEvents) {
      if (answered.has(e.nodeId)) continue
      out.push({
        node: e.nodeId,
        subscription: e.subscription,
        lsn: e.lsn,
        occurred: e.occurred,
        relation: e.relation,
        key: null,
        value: null,
        sqlStateCode: e.sqlState,
        reason: e.reason,
        kind: e.sqlState.startsWith('23') ? 'conflict' : 'error',
        action: e.action === 'skip' ? 'skip' : 'none',
        attempts: 1,
        resolved: e.resolved,
      })
    }
    return dedupeResolutions(out).sort((a, b) => (a.occurred < b.occurred ? 1 : -1))
  }

  /** Announce a resolver event to every member. */
  async announce(e: Omit<ConflictEvent, 'v' | 'kind' | 'nodeId'>): Promise<void> {
    const event: ConflictEvent = { v: 1, kind: 'conflict', nodeId: this.init.nodeId, ...e }
    await this.init.mesh
      .publish('conflicts', event)
      .catch((err: Error) => this.init.log.debug({ err: err.message }, 'conflict event not sent'))
  }

  /** A member's conflict event, heard on the gossip topic. */
  heard(e: ConflictEvent): void {
    this.remoteEvents.push({ ...e, receivedMs: Date.now() })
    if (this.remoteEvents.length > MAX_REMOTE_EVENTS) this.remoteEvents.shift()
    this.init.log.info(
      {
        from: e.nodeId,
        subscription: e.subscription,
        lsn: e.lsn,
        relation: e.relation,
        action: e.action,
      },
      'conflict event from a member',
    )
  }
}

/**
 * Several nodes may record one row-level conflict (each that saw an older version arrive late):
 * one row per key and winning version, with every node that recorded it.
 */
function dedupeResolutions(rows: Array<HistoryEntry & { node: number }>): ClusterHistoryEntry[] {
  const seen = new Map<string, HistoryEntry & { node: number; nodes: number[] }>()
  const out: ClusterHistoryEntry[] = []
  for (const h of rows) {
    if (h.action !== 'lww') {
      out.push(h)
      continue
    }
    const id = JSON.stringify([h.relation, h.key, h.winner?.node, h.winner?.ts])
    const first = seen.get(id)
    if (first) {
      if (!first.nodes.includes(h.node)) first.nodes.push(h.node)
      continue
    }
    const row = { ...h, nodes: [h.node] }
    seen.set(id, row)
    out.push(row)
  }
  for (const r of seen.values()) r.nodes.sort((a, b) => a - b)
  return out
}
