import { describe, expect, it } from 'vitest'
import { faultAt, NO_FAULTS } from '../../src/cluster/faults.js'
import { CRASH_POINTS } from '../../src/config/types.js'
import { silentLogger } from '../../src/log.js'

describe('fault hooks', () => {
  it('production has none: no point is armed, reaching one does nothing', async () => {
    for (const p of CRASH_POINTS) {
      expect(NO_FAULTS.armed(p)).toBe(false)
      await NO_FAULTS.at(p)
    }
  })

  it.each(['SIGKILL', 'SIGSTOP'] as const)(
    'a %s hook is armed at its own point only, and passing another point lets the proposal go on',
    async (signal) => {
      const hook = faultAt('decision', signal, silentLogger())
      expect(CRASH_POINTS.filter((p) => hook.armed(p))).toEqual(['decision'])
      // reaching any other point returns (reaching 'decision' would signal this process: the
      // fault suite, test/faults/coordinator-crash.test.ts, runs that one in an arbiter)
      for (const p of CRASH_POINTS.filter((x) => x !== 'decision')) await hook.at(p)
    },
  )
})
