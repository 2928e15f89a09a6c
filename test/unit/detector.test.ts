import { describe, expect, it } from 'vitest'
import {
  detect,
  heardAfterStall,
  silenceTimings,
  stableAfterMs,
} from '../../src/cluster/detector.js'

const t = { heartbeatMs: 200, suspectAfterMs: 1000, deadAfterMs: 2000 }

describe('failure detector', () => {
  it('goes alive → suspect → dead with silence', () => {
    expect(detect({ lastHeardMs: 0 }, 999, t)).toBe('alive')
    expect(detect({ lastHeardMs: 0 }, 1000, t)).toBe('suspect')
    expect(detect({ lastHeardMs: 0 }, 1999, t)).toBe('suspect')
    expect(detect({ lastHeardMs: 0 }, 2000, t)).toBe('dead')
  })
  it('takes a closed connection as stronger evidence: suspect at once, dead after suspectAfterMs', () => {
    expect(detect({ lastHeardMs: 100, disconnectedAtMs: 150 }, 151, t)).toBe('suspect')
    expect(detect({ lastHeardMs: 100, disconnectedAtMs: 150 }, 1150, t)).toBe('dead')
  })
  it('takes a refused dial after the close as proof: dead at once', () => {
    expect(detect({ lastHeardMs: 100, disconnectedAtMs: 150, refusedAtMs: 160 }, 161, t)).toBe(
      'dead',
    )
    // refused before the connection came back and closed again: no proof of this close
    expect(detect({ lastHeardMs: 100, disconnectedAtMs: 150, refusedAtMs: 90 }, 151, t)).toBe(
      'suspect',
    )
    // connected and heard again since: alive whatever an old dial said
    expect(detect({ lastHeardMs: 300, disconnectedAtMs: 150, refusedAtMs: 160 }, 400, t)).toBe(
      'alive',
    )
  })
  it('lets a heartbeat heard after the disconnect (relayed) win', () => {
    expect(detect({ lastHeardMs: 300, disconnectedAtMs: 150 }, 400, t)).toBe('alive')
  })
  it('damps flaps: a member must stay alive a few heartbeats before it counts', () => {
    expect(stableAfterMs(t)).toBe(600)
    expect(stableAfterMs({ ...t, heartbeatMs: 50 })).toBe(500)
  })
})

describe('silence timings of a large mesh (patience.ts)', () => {
  const t = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }

  it('are the configured ones up to 16 members, and grow with log2 of the member count past that', () => {
    expect(silenceTimings(t, 0)).toBe(t)
    expect(silenceTimings(t, 16)).toBe(t)
    expect(silenceTimings(t, 32)).toEqual({ ...t, suspectAfterMs: 2000, deadAfterMs: 4000 })
    expect(silenceTimings(t, 64)).toEqual({ ...t, suspectAfterMs: 3000, deadAfterMs: 6000 })
  })

  it('leave a closed connection judged as before: a killed member is dead after suspectAfterMs', () => {
    const quiet = silenceTimings(t, 64)
    // silent for 2.5 s: dead with the configured timings, still alive with a 64-member mesh's
    expect(detect({ lastHeardMs: 0 }, 2500, t)).toBe('dead')
    expect(detect({ lastHeardMs: 0 }, 2500, t, quiet)).toBe('alive')
    expect(detect({ lastHeardMs: 0 }, 3000, t, quiet)).toBe('suspect')
    expect(detect({ lastHeardMs: 0 }, 6000, t, quiet)).toBe('dead')
    // a closed connection: suspect at once and dead after suspectAfterMs, whatever the size
    expect(detect({ lastHeardMs: 0, disconnectedAtMs: 100 }, 100, t, quiet)).toBe('suspect')
    expect(detect({ lastHeardMs: 0, disconnectedAtMs: 100 }, 1100, t, quiet)).toBe('dead')
    expect(detect({ lastHeardMs: 0, disconnectedAtMs: 100, refusedAtMs: 150 }, 150, t, quiet)).toBe(
      'dead',
    )
  })
})

describe('a stall of this process (membership.ts tick)', () => {
  it("moves a member's silence up by the stall, not past now", () => {
    expect(heardAfterStall({ lastHeardMs: 1000 }, 300, 5000)).toBe(1300)
    expect(heardAfterStall({ lastHeardMs: 1000 }, 9000, 5000)).toBe(5000)
  })

  it('keeps a connection closed since it was heard, then refused, the latest evidence', () => {
    const e = { lastHeardMs: 1000, disconnectedAtMs: 1200, refusedAtMs: 1300 }
    const heard = heardAfterStall(e, 500, 1800)
    expect(heard).toBe(1200)
    // so a killed member is still dead at once
    const t = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }
    expect(detect({ ...e, lastHeardMs: heard }, 1800, t)).toBe('dead')
  })

  it('moves past a connection closed only (a loaded start), or closed before it was heard', () => {
    expect(heardAfterStall({ lastHeardMs: 1000, disconnectedAtMs: 1200 }, 500, 1800)).toBe(1500)
    const before = { lastHeardMs: 1000, disconnectedAtMs: 800, refusedAtMs: 900 }
    expect(heardAfterStall(before, 300, 5000)).toBe(1300)
  })
})
