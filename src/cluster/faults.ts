// Fault hooks: the points of a proposal where the fault suite kills or freezes a coordinator.
// The algorithm only says where it is; what happens there is injected (nothing in production;
// a SIGKILL of this process under `testing.crashAt`, a SIGSTOP under `testing.freezeAt` — the
// test sends SIGCONT —, allowed only with TRAKTOR_TESTING=1).
import type { CrashPoint } from '../config/types.js'
import type { Logger } from '../log.js'

export interface FaultHooks {
  /** whether something happens at this point (for points that prepare before they are hit) */
  armed(point: CrashPoint): boolean
  /** the proposal reached this point */
  at(point: CrashPoint): Promise<void>
}

/** Production: nothing happens anywhere. */
export const NO_FAULTS: FaultHooks = { armed: () => false, at: async () => {} }

/**
 * The prepares must reach the members before the crash at 'prepare-sent' (a request on a new
 * stream takes a round trip to negotiate first): 30 ms was not always enough on a loaded CI
 * machine — the members never heard of the proposal, and had nothing to act on alone. They may
 * have answered by then; the coordinator decides nothing before the hook returns.
 */
const DELAY_MS: Partial<Record<CrashPoint, number>> = { 'prepare-sent': 250 }

/**
 * At `point`, die the way a crashed coordinator does (SIGKILL: no clean-up, no goodbye), or
 * stop the way a paused one does (SIGSTOP: every timer and socket frozen until the test sends
 * SIGCONT). A pause happens once: a resumed coordinator re-driving the same proposal goes on.
 */
export function faultAt(point: CrashPoint, signal: 'SIGKILL' | 'SIGSTOP', log: Logger): FaultHooks {
  let paused = false
  return {
    armed: (p) => p === point && !paused,
    at: async (p) => {
      if (p !== point || paused) return
      const delay = DELAY_MS[p] ?? 0
      if (delay > 0) await new Promise((r) => setTimeout(r, delay))
      if (signal === 'SIGKILL') {
        log.fatal({ point }, 'test hook: killing this arbiter (testing.crashAt)')
      } else {
        paused = true
        log.warn({ point }, 'test hook: freezing this arbiter (testing.freezeAt)')
      }
      process.kill(process.pid, signal)
    },
  }
}
