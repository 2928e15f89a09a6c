// A yes that stays true is not asked again every time: "is this node initialised?" was asked
// about 11 times a second by the loops of an idle arbiter (of ~45 queries a second in all).

/** how long a yes is kept by default */
export const KEEP_TRUE_MS = 5000

/**
 * `ask`, with a true answer kept for `ttlMs` (a false one is asked again at once: a node
 * about to be initialised must see it as soon as it is). `forget()` drops the kept answer.
 */
export function keepTrue(
  ask: () => Promise<boolean>,
  ttlMs = KEEP_TRUE_MS,
  now: () => number = Date.now,
): { get: () => Promise<boolean>; forget: () => void } {
  let trueUntil = 0
  return {
    get: async () => {
      if (now() < trueUntil) return true
      const yes = await ask()
      trueUntil = yes ? now() + ttlMs : 0
      return yes
    },
    forget: () => {
      trueUntil = 0
    },
  }
}
