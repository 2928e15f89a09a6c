// Stopping parts in order, with a watchdog: a part that has not stopped after a while is
// named in the log (again every few seconds), so a stop that hangs says where.
import type { Logger } from './log.js'

/** a part still stopping after this long is logged as slow, then again at this interval */
export const SLOW_STOP_MS = 2_000

export type StopStep = readonly [part: string, stop: () => Promise<void> | void]

/** Run each part's stop in the order given; each waits for the one before. */
export async function stopInOrder(
  log: Logger,
  steps: readonly StopStep[],
  slowMs = SLOW_STOP_MS,
): Promise<void> {
  for (const [part, stop] of steps) {
    const began = Date.now()
    const watchdog = setInterval(
      () => log.warn({ part, elapsedMs: Date.now() - began }, 'still stopping'),
      slowMs,
    )
    try {
      await stop()
    } finally {
      clearInterval(watchdog)
    }
  }
}
