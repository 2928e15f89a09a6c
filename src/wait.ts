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

/**
 * Proving that something does NOT happen needs a window: `cond` is checked every `everyMs`
 * for `ms`, and the first time it fails (false, or throws) ends the wait with an error naming
 * `what` and when. A fixed sleep followed by one look would miss a change undone meanwhile.
 */
export async function holdsThroughout(
  cond: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
  everyMs = 50,
): Promise<void> {
  const start = Date.now()
  for (;;) {
    const ok = await Promise.resolve()
      .then(cond)
      .catch((err: Error) => err)
    if (ok !== true) {
      const why = ok instanceof Error ? `: ${ok.message}` : ''
      throw new Error(`${what} did not hold ${Date.now() - start} ms into ${ms} ms${why}`)
    }
    if (Date.now() - start >= ms) return
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
