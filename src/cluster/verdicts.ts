// A node's vote on a proposal, and why a member cannot take part in one.
import type { TableContent } from '../postgres/join-copy.js'
import type { Member } from './membership.js'

export interface NodeVerdict {
  node: number
  ack: boolean
  applied?: boolean
  reason?: string
  /** what a joining table holds on the node (not in answers: copy-plan.ts reads it) */
  content?: TableContent
}

/** Why a member cannot take part in a proposal now. */
export function unusable(m: Member): string {
  if (m.duplicate) return `node ${m.nodeId} is claimed by two arbiters`
  if (m.state !== 'alive')
    return `node ${m.nodeId} is ${m.state} (last heard ${Math.round((Date.now() - m.lastHeardMs) / 100) / 10} s ago)`
  if (!m.postgresUp) return `node ${m.nodeId}: its arbiter cannot reach its PostgreSQL`
  return `node ${m.nodeId} is still ${m.joinState}`
}

/** A member's vote as it answered (no answer, or garbage: a refusal saying why). */
export function verdictOf(
  node: number,
  r:
    | {
        ok: true
        result: { ack?: boolean; reason?: string | undefined; content?: TableContent | undefined }
      }
    | { ok: false; error: string },
): NodeVerdict {
  if (!r.ok) return { node, ack: false, reason: `node ${node}: ${r.error}` }
  return {
    node,
    ack: r.result.ack === true,
    ...(r.result.reason ? { reason: r.result.reason } : {}),
    ...(r.result.content ? { content: r.result.content } : {}),
  }
}
