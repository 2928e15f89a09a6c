// gossipsub's two once-a-second timers on the arbiter's beat (src/beat.ts). Its heartbeat runs at
// the multiples of a second counted from whenever it started, and its peer-score decay on a
// setInterval of its own (which drifts), so each woke an idle arbiter once a second at a moment
// of its own: strace of an idle arbiter showed timer wake-ups at 800, 850 and 950 ms past every
// second beside the beat's 0, 250, 500 and 750. Here the heartbeat's schedule is counted from a
// whole second, and the decay runs on the beat. Both are private fields of @libp2p/gossipsub
// 15; each is checked before it is touched, and left alone when it is not what it was.
import { type Beat, onBeat } from '../beat.js'

interface Heartbeat {
  status?: { hearbeatStartMs?: unknown }
  opts?: { heartbeatInterval?: unknown }
  score?: Score
}
interface Score {
  _backgroundInterval?: unknown
  background?: () => void
  params?: { decayInterval?: unknown }
}

/** Aligns a started gossipsub's timers; returns the beat that now runs the score's decay. */
export function beatGossipsub(pubsub: unknown): Beat | undefined {
  const g = pubsub as Heartbeat
  const every = g.opts?.heartbeatInterval
  if (g.status && typeof g.status.hearbeatStartMs === 'number' && typeof every === 'number') {
    // the next heartbeats fall on the multiples of `every` on the clock, as the beat's do
    g.status.hearbeatStartMs = Math.ceil(g.status.hearbeatStartMs / every) * every
  }
  const score = g.score
  const decay = score?.params?.decayInterval
  if (
    score === undefined ||
    score._backgroundInterval === undefined ||
    typeof score.background !== 'function' ||
    typeof decay !== 'number'
  )
    return undefined
  clearInterval(score._backgroundInterval as NodeJS.Timeout)
  // a cleared timer in its place: the score's own stop() still clears its maps
  const placeholder = setInterval(() => {}, 2 ** 30)
  clearInterval(placeholder)
  score._backgroundInterval = placeholder
  const background = score.background.bind(score)
  return onBeat(decay, background, { unref: true })
}
