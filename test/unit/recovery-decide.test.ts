// The in-doubt rule of recovery.ts, alone: what a member does with a proposal it prepared that
// nobody decided, from what the reachable nodes answer.
import { describe, expect, it } from 'vitest'
import { inDoubtOutcome, type Status } from '../../src/cluster/recovery.js'

const s = (decision: Status['decision']): Status => ({ decision })

describe('inDoubtOutcome', () => {
  it('commits when any node decided COMMIT, whatever the others say', () => {
    expect(inDoubtOutcome([s('pending'), undefined, s('commit')])).toBe('commit')
    expect(inDoubtOutcome([s('abort'), s('commit')])).toBe('commit')
  })

  it('aborts on an ABORT, or on a node that never saw the proposal', () => {
    expect(inDoubtOutcome([s('pending'), s('abort')])).toBe('abort')
    expect(inDoubtOutcome([undefined, s('unknown')])).toBe('abort')
  })

  it('stays in doubt while everyone reachable only prepared, or nobody answers', () => {
    expect(inDoubtOutcome([s('pending'), s('pending')])).toBe('in doubt')
    expect(inDoubtOutcome([undefined, undefined])).toBe('in doubt')
    expect(inDoubtOutcome([])).toBe('in doubt')
  })
})
