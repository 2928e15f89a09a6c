// A member's answer is read only once it has its method's shape: a malformed one is an error
// naming the method and the place, never a value read on.
import { describe, expect, it } from 'vitest'
import { answerOf } from '../../src/cluster/rpc-results.js'

describe('answerOf', () => {
  it('passes a well-formed answer through, typed', () => {
    const a = answerOf('proposal.status', { ok: true, result: { decision: 'commit' } })
    expect(a).toEqual({ ok: true, result: { decision: 'commit' } })
    const v = answerOf('proposal.prepare', { ok: true, result: { ack: false, reason: 'busy' } })
    expect(v.ok && v.result.reason).toBe('busy')
  })

  it('turns a malformed answer into an error naming the method and the field', () => {
    const a = answerOf('proposal.status', { ok: true, result: { decision: 'maybe' } })
    expect(a.ok).toBe(false)
    expect(!a.ok && a.error).toMatch(/malformed answer to proposal\.status at decision/)
    const snap = answerOf('replicaset.get', {
      ok: true,
      result: { version: 3, tables: [{ relation: 'a.b', schema: 'a', table: 'b' }] },
    })
    expect(!snap.ok && snap.error).toMatch(/replicaset\.get at tables\.0\.columns/)
    const used = answerOf('sequences.used', {
      ok: true,
      result: [{ schema: 's', table: 't', column: 'id', used: '1; DROP', increment: '1' }],
    })
    expect(used.ok).toBe(false)
  })

  it('keeps the error of a failed call', () => {
    const a = answerOf('history.list', { ok: false, error: { code: 'x', message: 'timed out' } })
    expect(a).toEqual({ ok: false, error: 'timed out' })
  })
})
