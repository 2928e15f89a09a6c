// Periodic work on a shared beat (issue 14, idle CPU). Every wake-up of an idle process costs
// it CPU (~0.1 ms here), and a dozen loops with timers of their own — 200 ms to 1 s, each
// started at its own moment — woke an idle arbiter ~30 times a second. A loop on the beat runs
// at the multiples of its period on the clock, so loops whose periods divide one another run
// in one wake-up: 250, 500 and 1000 ms together four times a second.

export interface Beat {
  stop(): void
}

/**
 * Run `fn` at every multiple of `periodMs` (wall clock) until stopped. `unref`: the beat alone
 * does not keep the process alive. A slow `fn` does not shift the beat.
 */
export function onBeat(periodMs: number, fn: () => void, opts: { unref?: boolean } = {}): Beat {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const arm = (first: boolean) => {
    const now = Date.now()
    timer = setTimeout(fire, nextBeat(now, periodMs, first) - now)
    if (opts.unref) timer.unref()
  }
  const fire = () => {
    if (stopped) return
    arm(false)
    fn()
  }
  arm(true)
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}

/**
 * The next multiple of `periodMs` after `now`: the first one strictly after it; after a beat,
 * the nearest one a period on (a timer that fired a millisecond early must not fire again at
 * once, nor one that fired late skip a beat).
 */
export function nextBeat(now: number, periodMs: number, first: boolean): number {
  const k = first ? Math.floor(now / periodMs) + 1 : Math.round((now + periodMs) / periodMs)
  return k * periodMs
}
