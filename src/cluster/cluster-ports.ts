// What the checker and the sequence striper need of the cluster, built from membership and the
// mesh: who takes part, and the calls to them. A member takes part when it is ready, claimed
// by one arbiter only, and not removed; a suspect one is still asked (a loaded node misses
// heartbeats, not calls).
import type { RpcHandler } from '../mesh/types.js'
import type { RelationName } from '../postgres/ident.js'
import type { CheckPort } from './checker.js'
import type { Member, Membership } from './membership.js'
import { fanOut, type MeshPort } from './port.js'
import { answerOf } from './rpc-results.js'
import type { MemberUsed } from './sequences.js'

/** a call to every member that does not need more (best effort, status reads) */
export const FANOUT_TIMEOUT_MS = 2000

export interface ClusterPortsInit {
  nodeId: number
  mesh: MeshPort
  membership: Membership
  isRemoved: (node: number) => boolean
  /** this node has joined (the background check runs only on a ready node) */
  isReady: () => boolean
  /** this node's own RPC handler: its part of a check is answered without the network */
  rpc: () => RpcHandler
  /** the replicated tables (schema.table) */
  tables: () => Promise<string[]>
}

/** A member that takes part in checks, repairs and striping (not dead). */
export function takesPart(m: Member, isRemoved: (node: number) => boolean): boolean {
  return m.state !== 'dead' && m.joinState === 'ready' && !m.duplicate && !isRemoved(m.nodeId)
}

export function checkPortOf(init: ClusterPortsInit): CheckPort {
  const { mesh, nodeId, membership, isRemoved } = init
  const ready = (m: Member) => takesPart(m, isRemoved)
  const request = async (node: number, req: { method: string; params: unknown }, ms: number) => {
    const m = membership.active().find((x) => x.nodeId === node)
    if (!m) throw new Error(`node ${node} is not a reachable member`)
    return await mesh.request(m.peerId, req, { timeoutMs: ms })
  }
  return {
    participants: () => {
      const others = membership
        .members()
        .filter((m) => m.joinState !== 'removed' && !isRemoved(m.nodeId))
      return {
        nodes: [nodeId, ...others.filter(ready).map((m) => m.nodeId)],
        missing: others
          .filter((m) => !ready(m))
          .map((m) => ({
            node: m.nodeId,
            why: m.duplicate ? 'duplicate' : m.state !== 'alive' ? m.state : m.joinState,
          })),
      }
    },
    call: async (node, method, params, timeoutMs) => {
      const req = { method, params }
      const r =
        node === nodeId ? await init.rpc()(mesh.peerId, req) : await request(node, req, timeoutMs)
      if (!r.ok) throw new Error(r.error.message)
      return r.result
    },
    broadcast: async (method, params) => {
      await fanOut(mesh, membership.active(), { method, params }, FANOUT_TIMEOUT_MS)
    },
    tables: init.tables,
    isLeader: () =>
      init.isReady() &&
      membership
        .members()
        .filter(ready)
        .every((m) => m.nodeId > nodeId),
  }
}

/** What every live ready member's sequences of these tables handed out; throws naming a silent one. */
export async function usedSequences(
  init: Pick<ClusterPortsInit, 'mesh' | 'membership' | 'isRemoved'>,
  rels: RelationName[],
): Promise<MemberUsed[]> {
  const members = init.membership
    .members()
    .filter((m) => m.state === 'alive' && takesPart(m, init.isRemoved))
  const req = { method: 'sequences.used', params: { tables: rels } }
  return (await fanOut(init.mesh, members, req, FANOUT_TIMEOUT_MS)).map(({ member, r }) => {
    const a = answerOf('sequences.used', r)
    if (!a.ok) throw new Error(`node ${member.nodeId}: ${a.error}`)
    return { node: member.nodeId, values: a.result }
  })
}
