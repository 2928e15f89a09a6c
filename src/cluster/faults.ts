// Fault hooks: the points of a proposal where the fault suite kills a coordinator. The
// algorithm only says where it is; what happens there is injected (nothing in production, a
// SIGKILL of this process under `testing.crashAt`, allowed only with TRAKTOR_TESTING=1).
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

/** the prepares must leave before the crash at 'prepare-sent' */
const DELAY_MS: Partial<Record<CrashPoint, number>> = { 'prepare-sent': 30 }

/** Die at `point` the way a crashed coordinator does: no clean-up, no goodbye. */
export function crashAt(point: CrashPoint, log: Logger): FaultHooks {
  return {
    armed: (p) => p === point,
    at: async (p) => {
      if (p !== point) return
      const delay = DELAY_MS[p] ?? 0
      if (delay > 0) await new Promise((r) => setTimeout(r, delay))
      log.fatal({ point }, 'test hook: killing this arbiter (testing.crashAt)')
      process.kill(process.pid, 'SIGKILL')
    },
  }
}
