// settleKept's decisions (cluster/check-kept.ts): a row whose out-of-line value was kept here is
// compared with its writer's copy of the same version and takes it when they differ; nothing
// else is written. The members' answers are scripted (FakeMembers); the real path, on real
// PostgreSQL and arbiters, is lww-types.test.ts ("TOASTed values").
import { describe, expect, it } from 'vitest'
import { CheckCalls, type CheckPort } from '../../src/cluster/check-calls.js'
import { settleKept } from '../../src/cluster/check-kept.js'
import { silentLogger } from '../../src/log.js'

interface Row {
  k: string
  h: string
  ts: string | null
  origin: number | null
}

/** Scripted members: each node's rows by key; the calls made are recorded. */
class FakeMembers {
  readonly calls: Array<{ node: number; method: string; params: Record<string, unknown> }> = []
  replicated = ['demo.big']
  constructor(
    readonly rows: Map<number, Row[]>,
    readonly participants: number[],
  ) {}

  port(): CheckPort {
    return {
      participants: () => ({ nodes: this.participants, missing: [] }),
      call: async (node, method, params) => {
        const p = params as Record<string, unknown>
        this.calls.push({ node, method, params: p })
        const keys = new Set((p.keys as string[] | undefined) ?? [])
        const mine = (this.rows.get(node) ?? []).filter((r) => keys.has(r.k))
        if (method === 'check.rows') return { rows: mine }
        if (method === 'check.images')
          return {
            images: mine.map((r) => ({ k: r.k, row: `row ${r.h}`, h: r.h, ts: r.ts })),
            tooLarge: [],
            more: [],
          }
        if (method === 'check.repair') {
          const items = p.items as Array<{ k: string }>
          return {
            results: items.map((i) => ({ k: i.k, outcome: 'repaired', action: 'update' })),
          }
        }
        throw new Error(`unexpected ${method}`)
      },
      broadcast: async () => {},
      tables: async () => this.replicated,
      isLeader: () => false,
    }
  }
}

const k = (id: number) => `{"id": ${id}}`

async function settle(m: FakeMembers, pending: number[]) {
  const done: string[] = []
  const port = m.port()
  const calls = new CheckCalls({
    port,
    log: silentLogger(),
    stopping: () => new AbortController().signal,
  })
  const r = await settleKept(
    { calls, port, nodeId: 0 },
    {
      tables: async () => ['demo.big'],
      pending: async () => pending.map((id) => ({ entry: `e${id}`, k: k(id) })),
      done: async (_rel, entries) => {
        done.push(...entries)
      },
    },
    'demo.big',
  )
  return { ...r, done: done.sort() }
}

describe("kept values: a row takes its writer's copy of the same version", () => {
  it('differing from the writer at the same version: the writer’s image is written here, compare-and-set', async () => {
    const m = new FakeMembers(
      new Map([
        [0, [{ k: k(1), h: 'mixed', ts: '100', origin: 1 }]],
        [1, [{ k: k(1), h: 'whole', ts: '100', origin: 1 }]],
      ]),
      [0, 1, 2],
    )
    const r = await settle(m, [1])
    expect(r).toEqual({ taken: 1, left: 0, done: ['e1'] })
    const repair = m.calls.find((c) => c.method === 'check.repair')
    expect(repair?.node).toBe(0)
    expect(repair?.params.items).toEqual([
      { k: k(1), expect: 'mixed', image: 'row whole', ts: '100', winner: 1 },
    ])
    // asked of the writer only, never of node 2
    expect(m.calls.filter((c) => c.node === 2)).toEqual([])
  })

  it('the same as the writer: settled, nothing written', async () => {
    const m = new FakeMembers(
      new Map([
        [0, [{ k: k(1), h: 'same', ts: '100', origin: 1 }]],
        [1, [{ k: k(1), h: 'same', ts: '100', origin: 1 }]],
      ]),
      [0, 1],
    )
    expect(await settle(m, [1])).toEqual({ taken: 0, left: 0, done: ['e1'] })
    expect(m.calls.some((c) => c.method === 'check.repair')).toBe(false)
  })

  it('the writer moved on, or is not reachable: left for a later pass, nothing written', async () => {
    const m = new FakeMembers(
      new Map([
        [
          0,
          [
            { k: k(1), h: 'mixed', ts: '100', origin: 1 },
            { k: k(2), h: 'mixed', ts: '100', origin: 2 },
          ],
        ],
        [1, [{ k: k(1), h: 'newer', ts: '200', origin: 1 }]],
        [2, [{ k: k(2), h: 'whole', ts: '100', origin: 2 }]],
      ]),
      [0, 1], // node 2 is not taking part
    )
    expect(await settle(m, [1, 2])).toEqual({ taken: 0, left: 2, done: [] })
    expect(m.calls.some((c) => c.method === 'check.repair')).toBe(false)
  })

  it('a table taken out of the replicaset: its entries are dropped, nothing asked or written', async () => {
    const m = new FakeMembers(
      new Map([[0, [{ k: k(1), h: 'mixed', ts: '100', origin: 1 }]]]),
      [0, 1],
    )
    m.replicated = []
    expect(await settle(m, [1])).toEqual({ taken: 0, left: 0, done: ['e1'] })
    expect(m.calls).toEqual([])
  })

  it('a row gone here, or a version written here: settled without asking anyone', async () => {
    const m = new FakeMembers(new Map([[0, [{ k: k(2), h: 'own', ts: '100', origin: 0 }]]]), [0, 1])
    expect(await settle(m, [1, 2])).toEqual({ taken: 0, left: 0, done: ['e1', 'e2'] })
    expect(m.calls.every((c) => c.node === 0 && c.method === 'check.rows')).toBe(true)
  })
})
