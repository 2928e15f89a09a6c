import { describe, expect, it } from 'vitest'
import { modeMismatch, describe as name, newer } from '../../src/cluster/commit-mode.js'
import type { Member } from '../../src/cluster/membership.js'

const member = (nodeId: number, commit?: Member['commit'], state: Member['state'] = 'alive') =>
  ({ nodeId, state, ...(commit ? { commit } : {}) }) as Member

describe('commit mode', () => {
  it('a setting replaces another only when it was set later', () => {
    const mine = { mode: 'async' as const, changed: 10 }
    expect(newer({ mode: 'sync', changed: 11 }, mine)).toBe(true)
    expect(newer({ mode: 'sync', changed: 10 }, mine)).toBe(false)
    expect(newer({ mode: 'sync', changed: 9 }, mine)).toBe(false)
    expect(newer(undefined, mine)).toBe(false)
  })
  it('names every live member that runs another mode, and no dead or silent one', () => {
    const mine = { mode: 'sync' as const, changed: 0 }
    const reasons = modeMismatch(mine, [
      member(1, { mode: 'async', changed: 0 }),
      member(2, { mode: 'sync', changed: 0 }),
      member(3, { mode: 'async', changed: 0 }, 'dead'),
      member(4),
    ])
    expect(reasons).toHaveLength(1)
    expect(reasons[0]).toMatch(/^commit mode: node 1 runs async, this node sync/)
  })
  it('says what a setting waits for', () => {
    expect(name({ mode: 'async' })).toBe('async')
    expect(name({ mode: 'sync' })).toBe('sync (every live peer)')
    expect(name({ mode: 'sync', quorum: 2 })).toBe('sync (any 2 live peers)')
  })
})
