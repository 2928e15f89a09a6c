// Isolation verdicts and dial-failure logging, without a network: when a node counts as cut off
// from the mesh, in what words, and how often a failing dial is worth a warn line.
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { combine, isolationReason, memberReach } from '../../src/cluster/isolation.js'
import { hostOf } from '../../src/mesh/inbound.js'
import {
  DIAL_FAILURE_LOG_EVERY_MS,
  DialFailures,
  describeDialError,
  dialRefused,
  reach,
} from '../../src/mesh/isolation.js'

const T0 = Date.parse('2026-01-01T00:00:00.000Z')
const BOOT = ['/ip4/10.0.0.1/tcp/4001']

describe('the mesh verdict', () => {
  const facts = {
    now: T0,
    isolatedAfterMs: 5000,
    bootstrap: BOOT,
    aloneSince: T0,
    lastDialError: undefined,
  }

  it('is isolated once alone for isolatedAfterMs with a bootstrap address elsewhere', () => {
    expect(reach({ ...facts, now: T0 + 4999 }).isolated).toBe(false)
    const r = reach({ ...facts, now: T0 + 5000, lastDialError: 'x: ECONNREFUSED' })
    expect(r).toEqual({
      isolated: true,
      since: T0 + 5000,
      reason:
        'no peer reached since 2026-01-01T00:00:00.000Z (bootstrap: /ip4/10.0.0.1/tcp/4001); last dial error: x: ECONNREFUSED',
      lastDialError: 'x: ECONNREFUSED',
    })
    // the words do not change while it lasts
    expect(reach({ ...facts, now: T0 + 60_000 }).reason).toBe(
      reach({ ...facts, now: T0 + 6000 }).reason,
    )
  })

  it('is never isolated while connected, nor with nowhere to go (a founder)', () => {
    expect(reach({ ...facts, now: T0 + 60_000, aloneSince: undefined }).isolated).toBe(false)
    expect(reach({ ...facts, now: T0 + 60_000, bootstrap: [] }).isolated).toBe(false)
  })
})

describe('the members verdict', () => {
  const m = (nodeId: number, state: 'alive' | 'suspect' | 'dead', heardAgoMs: number) => ({
    nodeId,
    state,
    lastHeardMs: T0 - heardAgoMs,
  })

  it('is isolated when members are known and none was heard for isolatedAfterMs', () => {
    expect(memberReach([m(2, 'dead', 6000), m(1, 'dead', 9000)], T0, 5000)).toEqual({
      isolated: true,
      since: T0 - 6000 + 5000, // the last heard, plus the threshold
      reason: 'no member heard since 2025-12-31T23:59:54.000Z (nodes 1, 2)',
    })
    expect(memberReach([m(2, 'dead', 4000)], T0, 5000).isolated).toBe(false)
    expect(memberReach([m(2, 'dead', 9000), m(1, 'alive', 9000)], T0, 5000).isolated).toBe(false)
  })

  it('is not isolated with no member at all: a cluster of one', () => {
    expect(memberReach([], T0, 5000)).toEqual({ isolated: false })
  })

  it("takes the mesh's verdict first, and adds its last dial error to the members'", () => {
    const mesh = { isolated: true, since: 1, reason: 'no peer reached since x' }
    const members = { isolated: true, since: 2, reason: 'no member heard since y (nodes 1)' }
    expect(combine(mesh, members)).toBe(mesh)
    expect(combine({ isolated: false, lastDialError: 'p: ECONNREFUSED' }, members)).toEqual({
      isolated: true,
      since: 2,
      reason: 'no member heard since y (nodes 1); last dial error: p: ECONNREFUSED',
      lastDialError: 'p: ECONNREFUSED',
    })
    expect(combine({ isolated: false }, { isolated: false }).isolated).toBe(false)
    expect(isolationReason(members)).toBe(
      'isolated from the mesh: no member heard since y (nodes 1)',
    )
  })
})

describe('dial failures', () => {
  it('are worth a line the first time, then once a minute with the count', () => {
    const f = new DialFailures()
    const lines: number[] = []
    for (let s = 0; s < 150; s += 5)
      lines.push(f.failed('/ip4/10.0.0.1/tcp/4001', 'e', T0 + s * 1000))
    // failures at 0 s, 60 s and 120 s are reported: 1, then the 12 of each minute
    expect(lines.filter((n) => n > 0)).toEqual([1, 12, 12])
    expect(DIAL_FAILURE_LOG_EVERY_MS).toBe(60_000)
    expect(f.last).toBe('/ip4/10.0.0.1/tcp/4001: e')
  })

  it('are counted per target, and forgotten on success', () => {
    const f = new DialFailures()
    expect(f.failed('a', 'e', T0)).toBe(1)
    expect(f.failed('b', 'e', T0)).toBe(1)
    expect(f.failed('a', 'e', T0 + 1000)).toBe(0)
    expect(f.succeeded('a')).toBe(2)
    expect(f.succeeded('a')).toBe(0)
    expect(f.failed('a', 'e', T0 + 2000)).toBe(1) // a new outage is news again
  })

  it('are described in one line, with a hint for a handshake that failed', () => {
    const enc = Object.assign(new Error('read ECONNRESET'), { name: 'EncryptionFailedError' })
    expect(describeDialError(enc)).toMatch(
      /^EncryptionFailedError: read ECONNRESET \(the handshake failed: is mesh.pskFile the same/,
    )
    const all = new AggregateError([new Error('connect ECONNREFUSED 10.0.0.1:4001')], 'all failed')
    expect(describeDialError(all)).toBe('Error: connect ECONNREFUSED 10.0.0.1:4001')
    expect(describeDialError('x'.repeat(1000)).length).toBeLessThanOrEqual(300)
  })
})

describe('a refused dial', () => {
  it('is every address refused (nothing listens there), not a timeout or a reset', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:4001'), {
      code: 'ECONNREFUSED',
    })
    expect(dialRefused(refused)).toBe(true)
    expect(dialRefused(new AggregateError([refused, refused], 'all failed'))).toBe(true)
    expect(dialRefused(new Error('dial failed', { cause: refused }))).toBe(true)
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' })
    expect(dialRefused(timeout)).toBe(false)
    expect(dialRefused(new AggregateError([refused, timeout], 'all failed'))).toBe(false)
    expect(dialRefused(new Error('read ECONNRESET'))).toBe(false)
    expect(dialRefused(undefined)).toBe(false)
  })
})

describe('inbound connections per host', () => {
  it('are counted by IP address', () => {
    expect(hostOf(multiaddr('/ip4/127.0.0.2/tcp/5555'))).toBe('127.0.0.2')
    expect(hostOf(multiaddr('/ip6/::1/tcp/5555'))).toBe('::1')
  })
})
