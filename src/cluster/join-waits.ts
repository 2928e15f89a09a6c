// The waits of a join (join.ts): its turn (one copy at a time), every ready member settled,
// and a peer's slot flushed past a point. Each polls with a deadline and ends when the
// attempt is aborted.
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from '../log.js'
import * as jc from '../postgres/join-copy.js'
import { subscriptionName } from '../postgres/subscriptions.js'
import { copyingNow, leftOut } from './join-decide.js'
import type { Member } from './membership.js'

export const sleep = (ms: number, signal: AbortSignal) => delay(ms, undefined, { signal })

const CATCH_UP_MS = 60_000
const POLL_MS = 100
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
  donorCatchUpMs?: number | undefined
  /** the join is waiting for another node's copy */
  waiting: () => void
}

/**
 * Wait while another node copies the cluster's data (one copy at a time). Nobody copying in
 * a few heartbeats in a row: a node that started just now has heard every member by then.
 */
export async function waitTurn(ctx: WaitContext, signal: AbortSignal): Promise<void> {
  let logged = false
  let quiet = 0
  for (;;) {
    signal.throwIfAborted()
    const busy = copyingNow(ctx.peers())
    if (busy.length === 0 && ++quiet >= QUIET_POLLS) return
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
 * The donor candidates, once every live ready member is one: a member just seen (not yet
 * stable) left out would never be subscribed to from the snapshot on, and its writes from
 * then until a later subscription would never arrive here.
 */
export async function settledMembers(ctx: WaitContext, signal: AbortSignal): Promise<Member[]> {
  const deadline = Date.now() + SETTLE_MS
  for (;;) {
    signal.throwIfAborted()
    const members = ctx.candidates().sort((a, b) => a.nodeId - b.nodeId)
    const unsettled = leftOut(ctx.peers(), members)
    if (unsettled.length === 0) return members
    if (Date.now() > deadline)
      throw new Error(
        `member ${unsettled.join(', ')} is ready but not settled (just seen, flapping, or its PostgreSQL down)`,
      )
    await sleep(POLL_MS, signal)
  }
}

export async function waitSlotFlushed(
  ctx: WaitContext,
  donor: Member,
  node: number,
  conn: string,
  lsn: string | undefined,
  signal: AbortSignal,
): Promise<void> {
  const slot = subscriptionName(donor.nodeId, node)
  const deadline = Date.now() + (ctx.donorCatchUpMs ?? CATCH_UP_MS)
  for (;;) {
    signal.throwIfAborted()
    const r = await jc.slotFlushedPast(conn, `traktor-${ctx.nodeId}-join`, slot, lsn ?? '0/0')
    if (r.ok) return
    if (Date.now() > deadline) {
      throw new Error(
        `donor node ${donor.nodeId} has not applied node ${node}'s changes up to ${lsn} (its slot ${slot} there is at ${r.flushed ?? 'missing'})`,
      )
    }
    await sleep(POLL_MS, signal)
  }
}
