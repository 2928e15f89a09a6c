import { describe, expect, it } from 'vitest'
import { detect, stableAfterMs } from '../../src/cluster/detector.js'

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
