// A member's answer is read only once it has its method's shape: a malformed one is an error
// naming the method and the place, never a value read on.
import { describe, expect, it } from 'vitest'
import { answerOf, resultOf, wireMethod } from '../../src/cluster/rpc-results.js'

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

describe('resultOf (the consistency check reads answers through it)', () => {
  it('reads a row page and a hash page, and asks check.page for either', () => {
    const rows = resultOf('check.page.rows', {
      rows: [{ k: '[1]', h: 'ab12', ts: '1700000000000000', origin: 2 }],
      next: 'tok/500',
    })
    expect(rows.rows[0]?.origin).toBe(2)
    expect(rows.next).toBe('tok/500')
    const hashes = resultOf('check.hashes', {
      rows: 3,
      commitTs: true,
      buckets: [0, 5],
      counts: [1, 2],
      hashes: ['ff', '0a'],
    })
    expect(hashes.buckets).toEqual([0, 5])
    expect(wireMethod('check.page.rows')).toBe('check.page')
    expect(wireMethod('check.page.hashes')).toBe('check.page')
    expect(wireMethod('check.rows')).toBe('check.rows')
  })

  it('throws on a malformed answer, naming the method and the field', () => {
    expect(() =>
      resultOf('check.rows', { rows: [{ k: '[1]', h: 'ab', ts: null, origin: 'two' }] }),
    ).toThrow(/malformed answer to check\.rows at rows\.0\.origin/)
    expect(() =>
      resultOf('check.repair', { results: [{ k: '[1]', outcome: 'maybe', action: 'none' }] }),
    ).toThrow(expect.objectContaining({ code: 'ERR_RPC_ANSWER' }))
    expect(() => resultOf('check.hashes', { buckets: [], counts: [], hashes: [] })).toThrow(
      /check\.hashes at rows/,
    )
  })
})
