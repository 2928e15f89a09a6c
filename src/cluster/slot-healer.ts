// Healing a lost slot (issue 11; README "Checking and repairing data"). A peer's replication
// slot here that PostgreSQL invalidated (wal_status lost: max_slot_wal_keep_size) means that
// peer will never again receive this node's changes through it; its subscription only loops
// on an error. The arbiter that sees the lost slot asks the peer to copy the cluster's data
// again — the join's copy procedure: fresh subscriptions and slots, its rows replaced by a
// donor's snapshot while writes go on — once per loss, and writes the heal to the ledger.
// `slotsToHeal` decides; the class only reads, calls and records.
import { type Beat, onBeat } from '../beat.js'
import type { Logger } from '../log.js'
import type { SlotObservation } from '../postgres/health-rules.js'

/** a slot must stay lost this long (health reports it first; a flicker heals nothing) */
export const HEAL_GRACE_MS = 3000
/** one heal per peer in this long: a copy takes time, and a slot lost again is a new loss */
export const HEAL_COOLDOWN_MS = 120_000
const TICK_MS = 1000

export interface HealMemory {
  /** slot → when it was first seen lost (ms) */
  lostSince: ReadonlyMap<string, number>
  /** peer → when it was last asked to copy again (ms) */
  healedAt: ReadonlyMap<number, number>
}

export const NO_HEALS: HealMemory = { lostSince: new Map(), healedAt: new Map() }

/**
 * Which peers to ask for a copy now: each lost slot's peer, once the slot has been lost for
 * graceMs, when the peer is a live ready member and was not asked within cooldownMs.
 */
export function slotsToHeal(
  slots: readonly SlotObservation[],
  ready: (peer: number) => boolean,
  memory: HealMemory,
  now: number,
  t: { graceMs: number; cooldownMs: number } = {
    graceMs: HEAL_GRACE_MS,
    cooldownMs: HEAL_COOLDOWN_MS,
  },
): { heal: Array<{ peer: number; slot: string }>; memory: HealMemory } {
  const lostSince = new Map<string, number>()
  const heal: Array<{ peer: number; slot: string }> = []
  const healedAt = new Map(memory.healedAt)
  for (const s of slots) {
    if (s.walStatus !== 'lost') continue
    const since = memory.lostSince.get(s.slot) ?? now
    lostSince.set(s.slot, since)
    if (now - since < t.graceMs || !ready(s.peer)) continue
    const last = healedAt.get(s.peer)
    if (last !== undefined && now - last < t.cooldownMs) continue
    if (heal.some((h) => h.peer === s.peer)) continue
    heal.push({ peer: s.peer, slot: s.slot })
    healedAt.set(s.peer, now)
  }
  return { heal, memory: { lostSince, healedAt } }
}

export interface SlotHealerInit {
  nodeId: number
  log: Logger
  /** the peers' slots on this server, as the health watch last saw them */
  slots: () => SlotObservation[]
  /** the peer is a live, ready member */
  ready: (peer: number) => boolean
  /** ask the peer to copy the cluster's data again */
  resync: (peer: number) => Promise<unknown>
  /** write the heal to the ledger */
  record: (heal: { peer: number; slot: string }) => Promise<void>
  now?: () => number
}

export class SlotHealer {
  private readonly init: SlotHealerInit
  private readonly log: Logger
  private timer: Beat | undefined
  private memory: HealMemory = NO_HEALS
  private busy: Promise<void> | undefined

  constructor(init: SlotHealerInit) {
    this.init = init
    this.log = init.log.child({ component: 'slot-healer' })
  }

  start(): void {
    this.timer ??= onBeat(TICK_MS, () => void this.tick(), { unref: true })
  }

  async stop(): Promise<void> {
    this.timer?.stop()
    this.timer = undefined
    await this.busy
  }

  /** One look (tests call it directly); a look in progress is waited for, not doubled. */
  async tick(): Promise<void> {
    if (this.busy) return await this.busy
    this.busy = this.run().finally(() => {
      this.busy = undefined
    })
    await this.busy
  }

  private async run(): Promise<void> {
    const now = (this.init.now ?? Date.now)()
    const d = slotsToHeal(this.init.slots(), this.init.ready, this.memory, now)
    this.memory = d.memory
    for (const h of d.heal) {
      this.log.warn(
        { peer: h.peer, slot: h.slot },
        `slot ${h.slot} is lost: node ${h.peer} copies the cluster's data again`,
      )
      try {
        await this.init.resync(h.peer)
        await this.init.record(h)
      } catch (err) {
        // asked again after the cooldown, if the slot is still lost
        this.log.error({ peer: h.peer, slot: h.slot, err: (err as Error).message }, 'heal failed')
      }
    }
  }
}
