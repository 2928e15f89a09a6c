// `traktor ctl check [TABLE] [--json] [--repair] [--from NODE]`: arguments, route, rendering
// and exit codes (issue 11).
import { describe, expect, it } from 'vitest'
import { CHECK_TIMEOUT_MS, parseArgs } from '../../src/ctl/args.js'
import { reportAnswer, routeOf } from '../../src/ctl/commands.js'
import { UsageError } from '../../src/ctl/errors.js'

const run = (argv: string[]) => {
  const p = parseArgs(argv, {})
  if (p.kind !== 'run') throw new Error('expected a command')
  return p
}
const usage = (argv: string[]): string => {
  try {
    parseArgs(argv, {})
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    return (err as Error).message
  }
  throw new Error(`no usage error for ${argv.join(' ')}`)
}

const table = (patch: Record<string, unknown> = {}) => ({
  relation: 'demo.t',
  verdict: 'consistent',
  nodes: [
    { node: 0, rows: 1200 },
    { node: 1, rows: 1200 },
    { node: 2, rows: 1201 },
  ],
  differing_rows: 0,
  keys: [],
  keys_truncated: false,
  unsettled_rows: 0,
  duration_ms: 420,
  notes: [],
  ...patch,
})
const differing = table({
  verdict: 'differs',
  differing_rows: 1,
  keys: [
    {
      key: { id: 5 },
      nodes: {
        '0': { hash: '86c1fc86eee6e0f5', committed: '2026-12-02T08:06:19.496387Z', origin: 0 },
        '1': null,
        '2': { hash: '86c1fc86eee6e0f5', committed: '2026-12-02T08:06:19.496387Z', origin: 0 },
      },
      winner: 2,
    },
  ],
})
const answer = (t: unknown, verdict = 'consistent') => ({
  node: 0,
  verdict,
  checked_at: '2026-12-02T08:06:20.000Z',
  tables: [t],
})

describe('ctl check: arguments and routes', () => {
  it('parses check, check TABLE, --repair and --from, with a long default timeout', () => {
    expect(run(['check']).command).toEqual({ name: 'check' })
    expect(run(['check', 'demo.t']).command).toEqual({ name: 'check', relation: 'demo.t' })
    expect(run(['check', 'demo.t', '--repair']).command).toEqual({
      name: 'check repair',
      relation: 'demo.t',
    })
    expect(run(['check', '--repair', '--from', '2', 'demo.t']).command).toEqual({
      name: 'check repair',
      relation: 'demo.t',
      from: 2,
    })
    expect(run(['check']).options.timeoutMs).toBe(CHECK_TIMEOUT_MS)
    expect(run(['check', '--json']).options.json).toBe(true)
  })

  it('refuses what makes no sense, saying why', () => {
    expect(usage(['check', '--repair'])).toMatch(/needs SCHEMA.TABLE/)
    expect(usage(['check', 'demo.t', '--from', '1'])).toMatch(/add --repair/)
    expect(usage(['check', 'demo.t', '--repair', '--from', 'x'])).toMatch(/--from must be/)
    expect(usage(['status', '--repair'])).toMatch(/go with check/)
    expect(usage(['check', 'a.b', 'c.d'])).toMatch(/at most one/)
    expect(usage(['check', 'not a table'])).toMatch(/malformed table name/)
    expect(usage(['check', '--watch'])).toMatch(/--watch works with/)
  })

  it('maps to the check routes', () => {
    expect(routeOf({ name: 'check' })).toEqual({ method: 'GET', path: '/v1/cluster/check' })
    expect(routeOf({ name: 'check', relation: '"My S".t' })).toEqual({
      method: 'GET',
      path: '/v1/cluster/check/%22My%20S%22.t',
    })
    expect(routeOf({ name: 'check repair', relation: 'demo.t', from: 1 })).toEqual({
      method: 'POST',
      path: '/v1/cluster/check/demo.t/repair?from=1',
    })
  })
})

describe('ctl check: output and exit codes', () => {
  it('a consistent cluster: a table, exit 0', () => {
    const r = reportAnswer({ name: 'check' }, 200, answer(table()), false)
    expect(r.exit).toBe(0)
    expect(r.out[0]).toContain('Check from node 0 at 2026-12-02 08:06:20 UTC: consistent')
    expect(r.out[0]).toMatch(
      /\| demo\.t \| consistent \| +1200\/1200\/1201 \| +0 \| +0 \| +0\.4 s \|/,
    )
    expect(r.out[0]).toContain('ROWS on node 0/1/2')
  })

  it('differing rows: one line per key with each node, exit 1', () => {
    const r = reportAnswer(
      { name: 'check', relation: 'demo.t' },
      200,
      answer(differing, 'differs'),
      false,
    )
    expect(r.exit).toBe(1)
    expect(r.out[0]).toContain(
      'demo.t {"id":5}: nodes 0,2 86c1fc86 (2026-12-02 08:06:19); node 1 absent; a repair takes node 2\'s',
    )
  })

  it('--json prints the answer and keeps the exit code', () => {
    const body = answer(differing, 'differs')
    const r = reportAnswer({ name: 'check' }, 200, body, true)
    expect(JSON.parse(r.out[0] as string)).toEqual(body)
    expect(r.exit).toBe(1)
  })

  it('a repair: what it did, what is left, and exit 1 while rows still differ', () => {
    const ok = reportAnswer(
      { name: 'check repair', relation: 'demo.t' },
      200,
      {
        relation: 'demo.t',
        rule: 'last writer',
        repaired_rows: 3,
        writes: 5,
        changed: [],
        failed: [],
        duration_ms: 2100,
        after: table(),
      },
      false,
    )
    expect(ok).toEqual({
      out: [
        'repaired 3 rows of demo.t (last writer): 5 writes on the nodes in 2.1 s; now consistent',
      ],
      err: [],
      exit: 0,
    })
    const left = reportAnswer(
      { name: 'check repair', relation: 'demo.t', from: 1 },
      409,
      {
        error: 'ERR_REPAIR_INCOMPLETE',
        relation: 'demo.t',
        rule: 'from node 1',
        repaired_rows: 0,
        writes: 0,
        changed: [{ id: 7 }],
        failed: [{ key: { id: 9 }, node: 2, error: '23503 violates foreign key' }],
        after: differing,
      },
      false,
    )
    expect(left.exit).toBe(1)
    expect(left.err).toEqual([
      'demo.t {"id":9}: failed on node 2: 23503 violates foreign key',
      '1 row was written meanwhile and left alone: {"id":7}',
      '1 row of demo.t still differs',
    ])
  })

  it('a refused repair is a refusal', () => {
    const r = reportAnswer(
      { name: 'check repair', relation: 'demo.t' },
      409,
      {
        error: 'ERR_REPAIR_SOURCE',
        message: 'node 9 cannot be the source',
      },
      false,
    )
    expect(r).toEqual({
      out: [],
      err: ['refused (409 ERR_REPAIR_SOURCE): node 9 cannot be the source'],
      exit: 1,
    })
  })
})
