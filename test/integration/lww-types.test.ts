// Issue 10, bad input: row-level last-writer-wins on exotic keys and values, on real
// PostgreSQL 17 and real arbiter processes. Insert-insert split brain and concurrent updates on
// composite, text (quotes, unicode), uuid, numeric and timestamptz keys; bytea, jsonb, array and
// NULL values; TOASTed values (> 8 kB, where PostgreSQL sends an unchanged value as "unchanged");
// and a table whose key values change. Each case ends with the same md5 on every node and
// exactly the later writer's rows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]

interface Case {
  table: string
  ddl: string
  /** key values as SQL expressions, one array of column values per row */
  keys: string[][]
  keyCols: string[]
}

const CASES: Case[] = [
  {
    table: 'comp',
    ddl: '(a int, b text, v text, n int NOT NULL DEFAULT 0, PRIMARY KEY (b, a))',
    keyCols: ['a', 'b'],
    keys: [
      ['1', `'x'`],
      ['1', `'y'`],
      ['2', `'x'`],
      ['-7', `''`],
    ],
  },
  {
    table: 'txt',
    ddl: '(k text PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)',
    keyCols: ['k'],
    keys: [
      [`'it''s "quoted"'`],
      [`'ünïcødé ключ 鍵 🔑'`],
      [`'back\\slash, comma) (paren'`],
      [`'{"looks":"like json"}'`],
      [`' '`],
    ],
  },
  {
    table: 'uid',
    ddl: '(id uuid PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)',
    keyCols: ['id'],
    keys: [
      [`'00000000-0000-0000-0000-000000000000'`],
      [`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`],
      [`'ffffffff-ffff-ffff-ffff-ffffffffffff'`],
    ],
  },
  {
    table: 'num',
    ddl: '(id numeric PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)',
    keyCols: ['id'],
    keys: [[`1.5`], [`-0.000001`], [`123456789012345678901234567890.123456789`], [`'NaN'`]],
  },
  {
    table: 'tsk',
    ddl: '(at timestamptz PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)',
    keyCols: ['at'],
    keys: [
      [`'2026-01-01 00:00:00.123456+00'`],
      [`'1999-12-31 23:59:59.999999-08'`],
      [`'infinity'`],
      [`'-infinity'`],
    ],
  },
]

// columns named t and x: the names of aliases a careless query would take for the whole row
const VALS = `(id int PRIMARY KEY, b bytea, j jsonb, arr int[], tarr text[], t text, n int, x text, js json)`
const BIG = `(id int PRIMARY KEY, big text, n int NOT NULL DEFAULT 0)`
const MOVE = `(id int PRIMARY KEY, v text)`
/** about 12.8 kB of hex that compresses poorly: stored out of line (TOAST) */
const BIG_VALUE = `(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 400) g)`

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function setSubs(on: boolean): Promise<void> {
  const pairs = MeshCluster.pairs(IDS)
  await (on ? c.heal(pairs) : c.cut(pairs))
}

/** every row of a table as text, sorted */
async function rows(id: number, table: string): Promise<string[]> {
  // the alias must not be a column's name (demo.vals has a column t); long rows shortened
  const r = await c.q(
    id,
    `SELECT CASE WHEN length(x) > 200 THEN left(x, 100) || '… md5 ' || md5(x) ELSE x END AS x
       FROM (SELECT trktr_row::text AS x FROM demo.${table} trktr_row) s ORDER BY 1`,
  )
  return r.map((x) => x.x as string)
}

/**
 * The table converges on every node to exactly `want` (the later writer's rows). Polled: a
 * node can hold the loser's version for a moment (applied, its own version queued), and all
 * nodes can then look alike before the resolution rounds restore the winner.
 */
async function expectExactly(table: string, want: string[]): Promise<void> {
  let got: string[][] = []
  // the wanted rows everywhere in three polls running (a moment's agreement can be the loser's
  // version still queued somewhere: seen once under a loaded full run)
  let agreed = 0
  await waitFor(
    async () => {
      got = await Promise.all(IDS.map((i) => rows(i, table)))
      agreed = got.every((g) => JSON.stringify(g) === JSON.stringify(want)) ? agreed + 1 : 0
      return agreed >= 3
    },
    30_000,
    `${table}: the later writer's rows on every node`,
    200,
  ).catch(() => undefined)
  for (const [i, g] of got.entries()) expect(g, `${table} on node ${i}`).toEqual(want)
  const md5 = await c.converged(IDS, `demo.${table}`, 5000)
  expect(md5).toMatch(new RegExp(`^${want.length} rows`))
}

/**
 * Partition, let `early` then (20 ms later) `late` write, capture the rows `expected` computes
 * (by default the late writer's whole table), heal, and require exactly those rows everywhere.
 */
async function race(
  table: string,
  early: (id: number) => Promise<void>,
  late: (id: number) => Promise<void>,
  expected?: () => Promise<string[]>,
): Promise<void> {
  await setSubs(false)
  await early(0)
  await sleep(20)
  await late(1)
  const want = expected ? await expected() : await rows(1, table)
  await setSubs(true)
  await expectExactly(table, want)
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'lwwtypes')
  for (const i of IDS) {
    for (const k of CASES) await c.q(i, `CREATE TABLE demo.${k.table} ${k.ddl}`)
    await c.q(i, `CREATE TABLE demo.vals ${VALS}`)
    await c.q(i, `CREATE TABLE demo.big ${BIG}`)
    await c.q(i, `CREATE TABLE demo.mv ${MOVE}`)
    await c.q(i, `CREATE TABLE demo.legacy ${MOVE}`)
    // another table's foreign key references demo.refd: a key change replicates as an UPDATE
    await c.q(i, `CREATE TABLE demo.refd ${MOVE}`)
    await c.q(i, `CREATE TABLE demo.refd_child (pid int REFERENCES demo.refd (id))`)
    for (const t of [...CASES.map((k) => k.table), 'vals', 'big', 'mv', 'legacy', 'refd'])
      await c.q(i, `ALTER TABLE demo.${t} OWNER TO traktor_arbiter`)
  }
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
  for (const t of [...CASES.map((k) => k.table), 'vals', 'big', 'mv', 'legacy', 'refd']) {
    const r = await call(c.api(0), 'PUT', `/v1/cluster/replicaset/demo.${t}`)
    expect(r.status, JSON.stringify(r.json)).toBe(201)
  }
}, 120_000)

afterAll(async () => {
  await c?.destroy()
})

describe('issue 10: last writer wins on exotic keys and values', () => {
  for (const k of CASES) {
    it(`${k.table}: insert-insert split brain, then concurrent updates`, async () => {
      const cols = [...k.keyCols, 'v'].join(', ')
      const insert = (v: string) => (id: number) =>
        c
          .q(
            id,
            `INSERT INTO demo.${k.table} (${cols}) VALUES ${k.keys
              .map((key) => `(${key.join(', ')}, $1)`)
              .join(', ')}`,
            [v],
          )
          .then(() => undefined)
      await race(k.table, insert('early'), insert('late'))
      const update = (v: string, by: number) => (id: number) =>
        c.q(id, `UPDATE demo.${k.table} SET v = $1 || v, n = n + $2`, [v, by]).then(() => undefined)
      await race(k.table, update('early ', 1), update('late ', 10))
    })
  }

  it('numeric keys equal in value but not in scale: the later writer’s text of the key', async () => {
    const ins = (key: string, v: string) => (id: number) =>
      c.q(id, `INSERT INTO demo.num (id, v) VALUES (${key}, $1)`, [v]).then(() => undefined)
    await race('num', ins('2.50', 'early'), ins('2.5', 'late'))
  })

  it('bytea, jsonb, arrays and NULLs: insert-insert, then concurrent updates', async () => {
    const ins = (tag: string) => (id: number) =>
      c
        .q(
          id,
          `INSERT INTO demo.vals SELECT g, decode(md5($1 || g), 'hex') || '\\x00ff'::bytea,
             jsonb_build_object('tag', $1::text, 'g', g, 'nested', jsonb_build_array(1.50, null, 'ü"\\')),
             ARRAY[[g, NULL], [2, 3]], ARRAY['a,b', NULL, '"q"', $1::text],
             CASE WHEN g % 2 = 0 THEN NULL ELSE $1 END, CASE WHEN g % 3 = 0 THEN NULL ELSE g END,
             $1, ('{"k":  1, "k": "dup ' || $1 || '"  }')::json
           FROM generate_series(1, 6) g`,
          [tag],
        )
        .then(() => undefined)
    await race('vals', ins('early'), ins('late'))
    const upd = (tag: string) => (id: number) =>
      c
        .q(
          id,
          `UPDATE demo.vals SET b = CASE WHEN id % 2 = 0 THEN NULL ELSE '\\x'::bytea || convert_to($1, 'UTF8') END,
             j = CASE WHEN id % 3 = 0 THEN 'null'::jsonb ELSE j || jsonb_build_object('by', $1::text) END,
             arr = CASE WHEN id % 2 = 1 THEN NULL ELSE arr END, tarr = tarr || $1::text,
             t = CASE WHEN t IS NULL THEN $1 ELSE NULL END, n = NULL, x = x || $1,
             js = ('[ "kept as written",  ' || to_json($1::text) || ' ]')::json`,
          [tag],
        )
        .then(() => undefined)
    await race('vals', upd('early'), upd('late'))
  })

  it('TOASTed values: insert-insert, then an update of the big value racing one of another column', async () => {
    const ins = (id: number) =>
      c
        .q(id, `INSERT INTO demo.big (id, big) SELECT g, ${BIG_VALUE} FROM generate_series(1, 4) g`)
        .then(() => undefined)
    await race('big', ins, ins)
    const [ext] = await c.q(
      0,
      `SELECT count(*)::int AS n FROM demo.big WHERE pg_column_toast_chunk_id(big) IS NOT NULL`,
    )
    expect(ext?.n, 'the big values are stored out of line').toBe(4)
    // the row-level triggers' WHEN clauses are copied by PostgreSQL for every statement on the
    // table, an INSERT's too (~1 µs per kB on the bundled build): they stay one short call
    const [quals] = await c.q(
      0,
      `SELECT count(*)::int AS n, coalesce(sum(length(tgqual)), 0)::int AS bytes
         FROM pg_trigger WHERE tgrelid = 'demo.big'::regclass AND tgname LIKE 'trktr\\_lww\\_%'`,
    )
    // update-and-delete, truncate and move (and insert and key, armed by the race above)
    expect(quals?.n).toBeGreaterThanOrEqual(5)
    // no trigger of ours on the writer's side for out-of-line values: the receiver finds them
    for (const i of IDS) {
      const [toast] = await c.q(
        i,
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'demo.big'::regclass AND tgname = 'trktr_lww_toast'`,
      )
      expect(toast?.n, `node ${i}`).toBe(0)
    }
    expect(quals?.bytes, 'the WHEN clauses of the row-level triggers, in bytes').toBeLessThan(400)
    // early: a new big value; late: another column only (PostgreSQL sends the big value as
    // "unchanged", and the receiver would keep the loser's big value with the winner's n)
    const setBig = (id: number) =>
      c.q(id, `UPDATE demo.big SET big = ${BIG_VALUE}`).then(() => undefined)
    const setN = (id: number) => c.q(id, `UPDATE demo.big SET n = n + 1`).then(() => undefined)
    await race('big', setBig, setN)
    // node 0 applied node 1's later update over its own new big value and kept that value (a
    // row nobody wrote), then took node 1's copy of the row: the repairs ledger says so
    const taken = await c.q(
      0,
      `SELECT count(*)::int AS n FROM trktr.repairs WHERE relation = 'demo.big' AND rule LIKE 'kept value%'`,
    )
    expect(taken[0]?.n, "rows of demo.big that took their writer's copy on node 0").toBe(4)
    // and the other way round
    await race('big', setN, setBig)
    // every kept value compared and settled (one whose writer had moved on, again later)
    await waitFor(
      async () => {
        const left = await Promise.all(
          IDS.map((i) => c.q(i, `SELECT count(*)::int AS n FROM trktr.kept_values`)),
        )
        return left.every((r) => r[0]?.n === 0)
      },
      10_000,
      'no kept values left on any node',
    )
    await c.converged(IDS, 'demo.big')
  })

  it('key changes: a moved row races an update, another move and a delete of its old key', async () => {
    await c.q(0, `INSERT INTO demo.mv VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')`)
    await expectExactly('mv', await rows(0, 'mv'))
    const early = async (id: number) => {
      await c.q(id, `UPDATE demo.mv SET id = id + 100 WHERE id IN (1, 2, 3)`)
      await c.q(id, `UPDATE demo.mv SET id = 104, v = 'moved early' WHERE id = 4`)
    }
    const late = async (id: number) => {
      await c.q(id, `UPDATE demo.mv SET v = 'updated late' WHERE id = 1`)
      await c.q(id, `UPDATE demo.mv SET id = 202 WHERE id = 2`)
      await c.q(id, `DELETE FROM demo.mv WHERE id = 3`)
      await c.q(id, `INSERT INTO demo.mv VALUES (104, 'inserted late')`)
    }
    // a key change is a delete of the old key and an insert of the new one: the move of 1 wins
    // over the update of the row it left (a delete wins over a concurrent update), both moves
    // of 2 stay, the move of 3 stays (its old key is deleted twice), and key 104 is the later
    // insert's
    await race('mv', early, late, async () => [
      '(101,one)',
      '(102,two)',
      '(103,three)',
      '(104,"inserted late")',
      '(202,two)',
    ])
  })

  it('key changes on a table another references: a move onto a key another node inserted', async () => {
    // written by node 0, so node 0's move of row 1 is no change of writer on the others: only
    // the unique violation it meets on node 1 (the key-change branch, armed by it) sees it
    await c.q(0, `INSERT INTO demo.refd VALUES (1, 'one'), (2, 'two'), (3, 'three')`)
    await expectExactly('refd', await rows(0, 'refd'))
    const early = async (id: number) => {
      // the row before the move in the same transaction: the apply worker knows its origin
      // when the move comes, also when it retries the transaction after a unique violation
      await c.q(
        id,
        `BEGIN; UPDATE demo.refd SET v = 'touched' WHERE id = 3;
         UPDATE demo.refd SET id = 50, v = 'moved early' WHERE id = 1; COMMIT`,
      )
    }
    const late = async (id: number) => {
      await c.q(id, `INSERT INTO demo.refd VALUES (50, 'inserted late')`)
      await c.q(id, `UPDATE demo.refd SET id = 60 WHERE id = 2`)
    }
    // key 50 holds the later writer's row; key 1 was moved away, key 2 moved to 60
    await race('refd', early, late, async () => ['(3,touched)', '(50,"inserted late")', '(60,two)'])
  })

  it('a per-table override: "resolvers": {"demo.legacy": "skip"} skips there, lww elsewhere', async () => {
    const triggers = async (id: number, table: string) => {
      const [r] = await c.q(
        id,
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'trktr\\_lww\\_%'`,
        [`demo.${table}`],
      )
      return r?.n as number
    }
    for (const i of IDS) expect(await triggers(i, 'legacy')).toBeGreaterThan(0)
    await Promise.all(IDS.map((i) => c.api(i).stop()))
    await Promise.all(IDS.map((i) => c.start(i, { resolvers: { 'demo.legacy': 'skip' } })))
    await c.waitMeshed(IDS)
    // the row-level triggers leave demo.legacy (installed while it was lww), stay elsewhere
    await waitFor(
      async () => (await Promise.all(IDS.map((i) => triggers(i, 'legacy')))).every((n) => n === 0),
      15_000,
      'no row-level triggers on demo.legacy',
    )
    for (const i of IDS) expect(await triggers(i, 'comp')).toBeGreaterThan(0)
    // one split brain on both tables: comp ends with the later writer's rows everywhere ...
    const write = (v: string) => async (id: number) => {
      await c.q(id, `INSERT INTO demo.legacy VALUES (1, $1)`, [v])
      await c.q(id, `INSERT INTO demo.comp (a, b, v) VALUES (100, 'override', $1)`, [v])
    }
    await race('comp', write('early'), write('late'))
    // ... and demo.legacy was skipped the TRAKTOR way: the transaction that conflicted is dropped
    await waitFor(
      async () => {
        const n = await Promise.all(
          IDS.map(async (i) => {
            const [r] = await c.q(
              i,
              `SELECT count(*)::int AS n FROM trktr.history WHERE action = 'skip' AND relation LIKE '%legacy'`,
            )
            return r?.n as number
          }),
        )
        return n[0] === 1 && n[1] === 1
      },
      15_000,
      'nodes 0 and 1 each skipped the other one’s insert into demo.legacy',
    )
    expect(await rows(0, 'legacy')).toEqual(['(1,early)'])
    expect(await rows(1, 'legacy')).toEqual(['(1,late)'])
    // which the consistency check finds and a repair converges
    const fix = await call(c.api(0), 'POST', '/v1/cluster/check/demo.legacy/repair')
    expect(fix.status, JSON.stringify(fix.json)).toBe(200)
    expect(await c.converged(IDS, 'demo.legacy')).toMatch(/^1 rows/)
  })
})
