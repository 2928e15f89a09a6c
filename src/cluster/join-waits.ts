// The waits of a join (join.ts): its turn (one copy at a time), every ready member settled,
// and a peer's slot flushed past a point. Each polls with a deadline and ends when the
// attempt is aborted.
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from '../log.js'
import * as jc from '../postgres/join-copy.js'
import { subscriptionName } from '../postgres/subscriptions.js'
import { copyingNow, type JoinPeer, leftOut, mustJoin } from './join-decide.js'
import type { Member } from './membership.js'
import type { MeshPort } from './port.js'
import { answerOf } from './rpc-results.js'

export const sleep = (ms: number, signal: AbortSignal) => delay(ms, undefined, { signal })

const CATCH_UP_MS = 60_000
const POLL_MS = 100
/** the donor's catch-up is read on kept connections: two cheap queries a poll */
const CATCH_UP_POLL_MS = 20
/** polls 300 ms apart that must see no other node copying before a copy starts */
const QUIET_POLLS = 3
/** how long a ready member that is not settled yet (just seen, flapping) is waited for */
const SETTLE_MS = 10_000

export interface WaitContext {
  nodeId: number
  log: Logger
  /** live ready members to copy from (settled) */
  candidates: () => Member[]
  /** every other live node, whatever its join state */
  peers: () => Member[]
  /** a member's view of the cluster (members.list), undefined when it cannot say */
  viewOf?: ((m: Member) => Promise<JoinPeer[] | undefined>) | undefined
  donorCatchUpMs?: number | undefined
  /** the join is waiting for another node's copy */
  waiting: () => void
}

/** Ask a member which nodes it hears (members.list): undefined if it cannot say. */
export async function askView(
  mesh: Pick<MeshPort, 'request'>,
  m: Member,
): Promise<JoinPeer[] | undefined> {
  const r = await mesh.request(
    m.peerId,
    { method: 'members.list', params: {} },
    { timeoutMs: 2000 },
  )
  const a = answerOf('members.list', r)
  return a.ok ? a.result : undefined
}

/**
 * The other nodes as this node hears them, and as a ready member hears them: a node that just
 * started has not heard every member yet (it learns of them through relays), while the
 * member's view is whole. `asked` says whether a member answered.
 */
async function seen(ctx: WaitContext): Promise<{ peers: JoinPeer[]; asked: boolean }> {
  const peers: JoinPeer[] = ctx.peers()
  const member = ctx.candidates().sort((a, b) => a.nodeId - b.nodeId)[0]
  const view = member && ctx.viewOf ? await ctx.viewOf(member) : undefined
  const others = (view ?? []).filter(
    (v) => v.nodeId !== ctx.nodeId && !peers.some((p) => p.nodeId === v.nodeId),
  )
  return { peers: [...peers, ...others], asked: view !== undefined }
}

/**
 * Wait while another node copies the cluster's data (one copy at a time). Nobody copying, as
 * this node and a ready member hear the cluster; without a member's answer, nobody copying in
 * a few heartbeats in a row (a node that started just now hears the others by then).
 */
export async function waitTurn(ctx: WaitContext, signal: AbortSignal): Promise<void> {
  let logged = false
  let quiet = 0
  for (;;) {
    signal.throwIfAborted()
    const { peers, asked } = await seen(ctx)
    const busy = copyingNow(peers)
    if (busy.length === 0 && (asked || ++quiet >= QUIET_POLLS)) return
    if (busy.length === 0) {
      await sleep(POLL_MS * 3, signal)
      continue
    }
    quiet = 0
    if (!logged) {
      ctx.log.info({ copying: busy }, 'waiting for another node to finish its copy')
      logged = true
    }
    ctx.waiting()
    await sleep(POLL_MS * 5, signal)
  }
}

/**
 * The members the copy works with, the donor first: every live ready member, once this node
 * hears each one a ready member hears (one left out would never be subscribed to from the
 * snapshot on, and its writes until a later subscription would never arrive here: the copy
 * would start over once it is heard), and once one of them is stable (the donor; the others
 * are only subscribed to, and need not be).
 */
export async function settledMembers(ctx: WaitContext, signal: AbortSignal): Promise<Member[]> {
  const deadline = Date.now() + SETTLE_MS
  const byId = (a: Member, b: Member) => a.nodeId - b.nodeId
  for (;;) {
    signal.throwIfAborted()
    const { peers } = await seen(ctx)
    const heard = ctx.peers().filter((p) => p.state === 'alive' && !p.duplicate && mustJoin(p))
    const donor = ctx.candidates().sort(byId)[0]
    const unsettled = leftOut(peers, heard)
    if (unsettled.length === 0 && (donor !== undefined || heard.length === 0))
      return donor ? [donor, ...heard.filter((m) => m.nodeId !== donor.nodeId).sort(byId)] : []
    if (Date.now() > deadline)
      throw new Error(
        unsettled.length > 0
          ? `member ${unsettled.join(', ')} is ready but not heard here (just seen, flapping, or its PostgreSQL down)`
          : 'no ready member has been stable long enough to copy from (members flapping)',
      )
    await sleep(POLL_MS, signal)
  }
}

/**
 * Wait until the donor applied `node`'s transactions up to `lsn`: its origin says so (at once,
 * while the node writes), or the donor's slot on the node is flushed past it.
 */
export async function waitDonorApplied(
  ctx: WaitContext,
  donor: { nodeId: number; conn: string },
  node: number,
  conn: string,
  lsn: string | undefined,
  signal: AbortSignal,
): Promise<void> {
  const slot = subscriptionName(donor.nodeId, node)
  const deadline = Date.now() + (ctx.donorCatchUpMs ?? CATCH_UP_MS)
  const probe = await jc.CatchUpProbe.open(donor.conn, conn, `traktor-${ctx.nodeId}-join`)
  try {
    for (;;) {
      signal.throwIfAborted()
      if (await probe.donorApplied(slot, lsn ?? '0/0')) return
      const r = await probe.slotFlushed(slot, lsn ?? '0/0')
      if (r.ok) return
      if (Date.now() > deadline) {
        throw new Error(
          `donor node ${donor.nodeId} has not applied node ${node}'s changes up to ${lsn} (its slot ${slot} there is at ${r.flushed ?? 'missing'})`,
        )
      }
      await sleep(CATCH_UP_POLL_MS, signal)
    }
  } finally {
    await probe.close()
  }
}
