// Waiting for a condition, with a deadline: the one poll loop shared by the demo, the tests,
// the benchmarks and the soak (those two import it from dist/).

/** Thrown by a condition to stop the wait at once: e.g. a process that exited will not answer. */
export class GiveUp extends Error {}

export interface WaitOptions {
  /** between tries (default 100 ms) */
  everyMs?: number
  /** called before each try; what it throws ends the wait (an interrupt, a Ctrl-C) */
  check?: () => void
}

/**
 * Poll `cond` until it returns a truthy value, and return that value. An error it throws
 * counts as "not yet" (its message is kept for the timeout's error), except GiveUp. Throws
 * after `ms` naming `what`.
 */
export async function waitFor<T>(
  cond: () => Promise<T | false | undefined | null> | T | false | undefined | null,
  ms: number,
  what: string,
  opts: number | WaitOptions = {},
): Promise<T> {
  const { everyMs = 100, check } = typeof opts === 'number' ? { everyMs: opts } : opts
  const deadline = Date.now() + ms
  let last: Error | undefined
  for (;;) {
    check?.()
    try {
      const v = await cond()
      if (v) return v
    } catch (err) {
      if (err instanceof GiveUp) throw err
      last = err as Error
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
