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
  // one question at a time: the loops on one beat all asked at once once a yes had expired
  let asking: Promise<boolean> | undefined
  return {
    get: async () => {
      if (now() < trueUntil) return true
      if (asking) return await asking
      const mine = ask().then((yes) => {
        // an answer asked before forget() is not kept
        if (asking === mine) trueUntil = yes ? now() + ttlMs : 0
        return yes
      })
      asking = mine
      const done = () => {
        if (asking === mine) asking = undefined
      }
      void mine.then(done, done)
      return await mine
    },
    forget: () => {
      trueUntil = 0
      asking = undefined
    },
  }
}
