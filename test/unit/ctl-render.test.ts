import { describe, expect, it } from 'vitest'
import { reportAnswer, routeOf } from '../../src/ctl/commands.js'
import { ago, shortConninfo, utc } from '../../src/ctl/format.js'
import { renderHistory, renderNodes, renderReplicaset, renderStatus } from '../../src/ctl/render.js'
import { reportOutcome, reportRemoveNode } from '../../src/ctl/report.js'
import { cleanCell, renderTable } from '../../src/ctl/table.js'

describe('ctl table', () => {
  it('aligns columns under a titled border, numbers to the right', () => {
    const t = renderTable({
      title: 'Cluster',
      headers: ['NODE', 'STATE'],
      rows: [
        ['0', 'alive'],
        ['12', 'suspect'],
      ],
      align: ['right'],
    })
    expect(t).toBe(
      [
        '+ Cluster -------+',
        '| NODE | STATE   |',
        '+------+---------+',
        '|    0 | alive   |',
        '|   12 | suspect |',
        '+------+---------+',
      ].join('\n'),
    )
  })

  it('keeps a title longer than the table, and works without one', () => {
    const t = renderTable({ title: 'a long title here', headers: ['A'], rows: [['x']] })
    expect(t.split('\n')[0]).toBe('+ a long title here +')
    expect(renderTable({ headers: ['A'], rows: [] }).split('\n')).toEqual([
      '+---+',
      '| A |',
      '+---+',
      '+---+',
    ])
  })

  it('strips control characters from cells, so server text cannot drive the terminal', () => {
    expect(cleanCell('ok\x1b[31mred\x1b[0m\nnext\tcol\u009b2J')).toBe('ok [31mred [0m next col 2J')
    const t = renderTable({ headers: ['R'], rows: [['a\nb']] })
    expect(t).toContain('| a b |')
    expect(t).not.toContain('\x1b')
  })
})

describe('ctl formatting', () => {
  it('says how long ago, in UTC, and where PostgreSQL is', () => {
    expect(ago(120)).toBe('0.1 s ago')
    expect(ago(42_400)).toBe('42 s ago')
    expect(ago(600_000)).toBe('10 min ago')
    expect(ago(undefined)).toBe('-')
    expect(utc('2025-06-01T12:00:03.456Z')).toBe('2025-06-01 12:00:03')
    expect(utc(null)).toBe('-')
    expect(shortConninfo('host=10.0.0.5 port=5433 dbname=app user=x')).toBe('10.0.0.5:5433/app')
    expect(shortConninfo('postgresql://u@db.example:6000/app')).toBe('db.example:6000/app')
    expect(shortConninfo('host=::1 dbname=app')).toBe('[::1]:5432/app')
    expect(shortConninfo("host='unterminated")).toBe("host='unterminated")
  })
})

const STATUS = {
  node: 0,
  healthy: false,
  replicaset_version: 3,
  members: [
    { node: 2, reachable: false, state: 'dead' },
    {
      node: 1,
      reachable: true,
      state: 'alive',
      is_replicating: false,
      is_tainted: true,
      conflicts_resolved: 4,
      conflicts_pending: 1,
      replication_lag_ms: 12.345,
      join_state: 'ready',
      commit: {
        mode: 'sync',
        quorum: null,
        changed: 1,
        standbys: [0],
        outside: [2],
        degraded: true,
      },
      subscriptions: [
        { name: 'trktr_sub_1_0', peer: 0, enabled: false, apply_errors: 2 },
        { name: 'trktr_sub_1_2', peer: 2, enabled: true, apply_errors: 0 },
      ],
      sequences: [
        {
          sequence: 'demo.t_id_seq',
          column: 'demo.t.id',
          type: 'integer',
          stride: 64,
          last_value: '1960000001',
          used_ratio: 0.9127,
          near_overflow: true,
        },
        {
          sequence: 'demo.b_id_seq',
          column: 'demo.b.id',
          type: 'bigint',
          stride: 64,
          last_value: '65',
          used_ratio: 0,
          near_overflow: false,
        },
      ],
    },
    {
      node: 0,
      reachable: true,
      state: 'alive',
      is_replicating: true,
      is_tainted: false,
      conflicts_resolved: 0,
      conflicts_pending: 0,
      replication_lag_ms: 0,
      join_state: 'joining',
      commit: {
        mode: 'async',
        quorum: null,
        changed: 0,
        standbys: [],
        outside: [],
        degraded: false,
      },
      subscriptions: [],
    },
  ],
}

describe('ctl read commands', () => {
  it('renders status, members sorted, problems listed under the table', () => {
    const out = renderStatus(STATUS)
    expect(out).toBe(
      [
        '+ Cluster seen from node 0, NOT healthy, replicaset version 3 -------+-------------+--------+',
        '| NODE | STATE | REPLICATING | TAINTED | CONFLICTS res/pend | LAG ms | SUBS on/all | COMMIT |',
        '+------+-------+-------------+---------+--------------------+--------+-------------+--------+',
        '|    0 | alive | yes         | no      |                0/0 |      0 |         0/0 | async  |',
        '|    1 | alive | no          | yes     |                4/1 |     12 |         1/2 | sync 0 |',
        '|    2 | dead  | -           | -       |                  - |      - |           - | -      |',
        '+------+-------+-------------+---------+--------------------+--------+-------------+--------+',
        'node 0: joining',
        'node 1: subscription trktr_sub_1_0 is disabled (2 apply errors)',
        'node 1: sequence demo.t_id_seq (integer) has used 91% of its range: change the column to bigint',
        'node 1: sync mode degraded: commits do not wait for nodes 2',
        'node 2: no answer',
      ].join('\n'),
    )
  })

  it('renders nodes with the answering arbiter marked, no passwords, join errors listed', () => {
    const out = renderNodes({
      node: 1,
      nodes: [
        {
          node: 1,
          self: true,
          state: 'alive',
          join_state: 'joining',
          join_error: 'cannot adopt the cluster replicaset: demo.t is missing',
          version: '0.1.0',
          postgres: 'host=10.0.0.6 port=5432 dbname=app user=traktor_arbiter',
        },
        {
          node: 0,
          self: false,
          state: 'suspect',
          join_state: 'ready',
          last_heard_ms_ago: 1234,
          version: '0.1.0',
          postgres: 'host=10.0.0.5 dbname=app',
          flaps: 2,
        },
      ],
    })
    const lines = out.split('\n')
    expect(lines[1]).toBe(
      '| NODE | STATE   | JOIN    | VERSION | LAST HEARD   | POSTGRES          |',
    )
    expect(lines[3]).toBe(
      '|    0 | suspect | ready   | 0.1.0   | 1.2 s ago    | 10.0.0.5:5432/app |',
    )
    expect(lines[4]).toBe(
      '|    1 | alive   | joining | 0.1.0   | this arbiter | 10.0.0.6:5432/app |',
    )
    expect(lines.slice(6)).toEqual([
      'node 0: came back 2 times',
      'node 1: cannot adopt the cluster replicaset: demo.t is missing',
    ])
  })

  it('renders the replicaset with its version, and an empty one', () => {
    expect(renderReplicaset({ node: 2, version: 0, replicaset: [] })).toBe(
      'replicaset version 0 (node 2)\nno tables in the replicaset',
    )
    expect(
      renderReplicaset({
        node: 2,
        version: 3,
        replicaset: [
          { relation: 'demo.t', status: 'committed' },
          { relation: 'public.orders', status: 'committed' },
        ],
      }).split('\n'),
    ).toEqual([
      'replicaset version 3 (node 2)',
      '+---------------+-----------+',
      '| RELATION      | STATUS    |',
      '+---------------+-----------+',
      '| demo.t        | committed |',
      '| public.orders | committed |',
      '+---------------+-----------+',
    ])
  })

  it('renders history: when it was resolved and how, or pending', () => {
    const out = renderHistory({
      node: 0,
      resolutions: [
        {
          node: 1,
          occurred: '2025-06-01T12:00:03.000Z',
          relation: 'demo.t',
          sql_state_code: '23505',
          resolved: '2025-06-01T12:00:03.400Z',
          subscription: 'trktr_sub_1_0',
          reason: 'Key (id)=(500) already exists.',
          action: 'skip',
        },
        {
          node: 0,
          occurred: '2025-06-01T11:59:00.000Z',
          relation: null,
          sql_state_code: 'P0001',
          resolved: null,
          subscription: 'trktr_sub_0_1',
          reason: 'no rows for you',
          action: 'none',
        },
      ],
    })
    const lines = out.split('\n')
    expect(lines[0]).toMatch(/^\+ History seen from node 0, times UTC -+\+/)
    expect(lines[1]).toBe(
      '| NODE | OCCURRED            | SUBSCRIPTION  | RELATION | SQLSTATE | RESOLVED           | REASON                         |',
    )
    expect(lines[3]).toBe(
      '|    1 | 2025-06-01 12:00:03 | trktr_sub_1_0 | demo.t   | 23505    | after 0.4 s (skip) | Key (id)=(500) already exists. |',
    )
    expect(lines[4]).toBe(
      '|    0 | 2025-06-01 11:59:00 | trktr_sub_0_1 | -        | P0001    | pending            | no rows for you                |',
    )
    expect(renderHistory({ node: 3, resolutions: [] })).toBe(
      'no conflicts or apply errors recorded (seen from node 3)',
    )
  })

  it('does not crash on answers of an unexpected shape', () => {
    for (const body of [undefined, null, 'text', [], { members: 'x', nodes: 3 }]) {
      expect(() => renderStatus(body)).not.toThrow()
      expect(() => renderNodes(body)).not.toThrow()
      expect(() => renderReplicaset(body)).not.toThrow()
      expect(() => renderHistory(body)).not.toThrow()
    }
  })
})

describe('ctl changes', () => {
  it('says whose rows a table joining with rows was copied from', () => {
    const r = reportOutcome(201, {
      outcome: 'committed',
      op: 'add',
      relation: 'demo.t',
      version: 2,
      copied: { from: 1, rows: 1000 },
      nodes: [0, 1, 2].map((node) => ({ node, ack: true, applied: true })),
      duration_ms: 80,
    })
    expect(r.out).toEqual([
      'committed demo.t (version 2) on nodes 0,1,2 in 80 ms',
      'its 1000 rows on node 1 copied to the others',
    ])
    const m = reportOutcome(201, {
      outcome: 'committed',
      op: 'add',
      relation: 'demo.t',
      version: 3,
      merged: {
        why: 'demo.t holds different rows on different nodes (...)',
        repaired_rows: 7,
        verdict: 'consistent',
      },
      nodes: [{ node: 0, ack: true, applied: true }],
      duration_ms: 80,
    })
    expect(m.out[1]).toBe(
      'demo.t holds different rows on different nodes (...): merged, 7 rows repaired (last writer wins); the table is consistent',
    )
  })
  it('says committed with the version, nodes and time', () => {
    const r = reportOutcome(201, {
      outcome: 'committed',
      op: 'add',
      relation: 'demo.t',
      version: 3,
      nodes: [
        { node: 2, ack: true, applied: true },
        { node: 0, ack: true, applied: true },
        { node: 1, ack: true, applied: true },
      ],
      duration_ms: 42,
    })
    expect(r).toEqual({
      out: ['committed demo.t (version 3) on nodes 0,1,2 in 42 ms'],
      err: [],
      exit: 0,
    })
    const rm = reportOutcome(200, {
      outcome: 'committed',
      op: 'remove',
      relation: 'demo.t',
      version: 4,
      nodes: [
        { node: 0, ack: true, applied: true },
        { node: 1, ack: true, applied: false, reason: 'refresh: connection refused' },
      ],
      duration_ms: 7,
    })
    expect(rm.out).toEqual(['committed removal of demo.t (version 4) on nodes 0,1 in 7 ms'])
    expect(rm.err).toEqual([
      'node 1: committed, not applied yet (refresh: connection refused); it catches up when it can',
    ])
    expect(rm.exit).toBe(0)
  })

  it('says unchanged', () => {
    const base = { outcome: 'unchanged', relation: 'demo.t', version: 3, nodes: [] }
    expect(reportOutcome(200, { ...base, op: 'add' }).out).toEqual([
      'unchanged: demo.t is already in the replicaset (version 3)',
    ])
    expect(reportOutcome(200, { ...base, op: 'remove' }).out).toEqual([
      'unchanged: demo.t is not in the replicaset (version 3)',
    ])
  })

  it('exits 1 on an abort with every node reason on stderr, without repeating node names', () => {
    const r = reportOutcome(409, {
      error: 'ERR_ABORTED',
      message: 'add demo.x aborted: node 1: table demo.x does not exist',
      outcome: 'aborted',
      op: 'add',
      relation: 'demo.x',
      version: 3,
      reason: 'a member refused',
      nodes: [
        { node: 0, ack: true },
        { node: 1, ack: false, reason: 'node 1: table demo.x does not exist' },
        { node: 2, ack: false, reason: 'timed out after 3000 ms' },
      ],
    })
    expect(r).toEqual({
      out: [],
      err: [
        'aborted: add demo.x, nothing changed (replicaset stays at version 3)',
        '  node 0: acknowledged',
        '  node 1: refused: table demo.x does not exist',
        '  node 2: refused: timed out after 3000 ms',
      ],
      exit: 1,
    })
    // aborted before asking anyone: the overall reason
    const early = reportOutcome(409, {
      outcome: 'aborted',
      op: 'remove',
      relation: 'demo.x',
      version: 3,
      reason: 'aborted by recovery',
      nodes: [],
    })
    expect(early.err).toEqual([
      'aborted: remove demo.x, nothing changed (replicaset stays at version 3)',
      '  aborted by recovery',
    ])
  })

  it('reports refusals that are not aborts with the code and message', () => {
    const r = reportAnswer(
      { name: 'replicaset add', relation: 'demo.t' },
      409,
      { error: 'ERR_NOT_MESH', message: 'this arbiter runs standalone' },
      false,
    )
    expect(r).toEqual({
      out: [],
      err: ['refused (409 ERR_NOT_MESH): this arbiter runs standalone'],
      exit: 1,
    })
    const s = reportAnswer({ name: 'status' }, 500, { error: 'ERR_INTERNAL', message: 'x' }, true)
    expect(s.exit).toBe(1)
    expect(JSON.parse(s.out[0] ?? '')).toEqual({ error: 'ERR_INTERNAL', message: 'x' })
  })

  it('reports a node removal, exit 1 when a node could not do its part', () => {
    expect(
      reportRemoveNode({
        node: 2,
        results: [
          { node: 2, ok: true },
          { node: 0, ok: true },
        ],
      }),
    ).toEqual({ out: ['removed node 2: done on nodes 2,0'], err: [], exit: 0 })
    const r = reportRemoveNode({
      node: 2,
      results: [
        { node: 0, ok: true },
        { node: 1, ok: false, error: 'timed out' },
      ],
    })
    expect(r.err).toEqual(['node 1: failed: timed out'])
    expect(r.exit).toBe(1)
  })

  it('prints the JSON as the server sent it with --json', () => {
    const body = { node: 0, version: 1, replicaset: [] }
    const r = reportAnswer({ name: 'replicaset list' }, 200, body, true)
    expect(r).toEqual({ out: [JSON.stringify(body, null, 2)], err: [], exit: 0 })
  })

  it('maps commands to routes, table names escaped', () => {
    expect(routeOf({ name: 'replicaset add', relation: '"a b".c' })).toEqual({
      method: 'PUT',
      path: '/v1/cluster/replicaset/%22a%20b%22.c',
    })
    expect(routeOf({ name: 'remove-node', node: 3 })).toEqual({
      method: 'DELETE',
      path: '/v1/cluster/nodes/3',
    })
    expect(routeOf({ name: 'history' })).toEqual({ method: 'GET', path: '/v1/cluster/history' })
  })
})
