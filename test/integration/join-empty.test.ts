// A copy that replaces a table's rows (a join that starts over after a table committed, join
// "copy", a resync) empties it in the copy's own transaction. TRUNCATE where it may (a fresh
// file: the COPY after it is as fast as into a new table); DELETE for a table another
// references by foreign key, when a writer holds the table, and in a resync (readers keep
// reading). Real PostgreSQL 17: a donor database and a local one on one server.
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, copyTable } from '../../src/postgres/join-copy.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

let server: PgServer
let donor: pg.Client
let snapshot: string

const SCHEMA = `
CREATE TABLE plain (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE parent (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent (id));
CREATE TABLE sales (id int, region text, v text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE sales_eu PARTITION OF sales FOR VALUES IN ('eu');
CREATE TABLE sales_us PARTITION OF sales FOR VALUES IN ('us');`

beforeAll(async () => {
  ;[server] = (await startServers(1, () => ({ name: 'jempty', fast: true }))) as [PgServer]
  await server.query('CREATE DATABASE src')
  await server.query('CREATE DATABASE dst')
  await server.query(
    `${SCHEMA}
     INSERT INTO plain SELECT g, 'donor ' || g FROM generate_series(1, 500) g;
     INSERT INTO parent SELECT g, 'donor ' || g FROM generate_series(1, 500) g;
     INSERT INTO sales SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'donor ' || g
       FROM generate_series(1, 500) g;`,
    [],
    { dbname: 'src' },
  )
  // the local copy holds older, different rows, and a child row that references one of them
  await server.query(
    `${SCHEMA}
     INSERT INTO plain SELECT g, 'old ' || g FROM generate_series(300, 900) g;
     INSERT INTO parent SELECT g, 'old ' || g FROM generate_series(300, 900) g;`,
    [],
    { dbname: 'dst' },
  )
  donor = await connect(server.conninfo({ dbname: 'src' }), 'join-empty-donor')
  await donor.query('BEGIN ISOLATION LEVEL REPEATABLE READ')
  snapshot = (await donor.query('SELECT pg_export_snapshot() AS s')).rows[0].s
})

afterAll(async () => {
  await donor?.end().catch(() => undefined)
  await server?.destroy()
})

const local = (sql: string) => server.query(sql, [], { dbname: 'dst' })
const filenode = async (table: string) =>
  (await local(`SELECT pg_relation_filenode('${table}') AS f`))[0]?.f

async function copy(table: string, truncate: boolean) {
  return await copyTable({
    donorConninfo: server.conninfo({ dbname: 'src' }),
    localConninfo: server.conninfo({ dbname: 'dst' }),
    appName: 'join-empty-test',
    snapshot,
    rel: { schema: 'public', table },
    columns:
      table === 'child'
        ? ['id', 'parent']
        : table === 'sales'
          ? ['id', 'region', 'v']
          : ['id', 'v'],
    origin: 'trktr_join_test',
    clear: true,
    truncate,
  })
}

async function expectDonorRows(table: string) {
  const sql = `SELECT count(*)::int AS n, md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS h FROM ${table}`
  const [r] = await local(sql)
  const [d] = await server.query(sql, [], { dbname: 'src' })
  expect(r).toEqual(d)
  expect(r?.n).toBe(500)
}

describe('a copy that replaces the rows', () => {
  it('truncates a table nothing references: a fresh file, the donor rows exactly', async () => {
    const before = await filenode('plain')
    await copy('plain', true)
    await expectDonorRows('plain')
    expect(await filenode('plain')).not.toBe(before)
  })

  it('deletes from a table another references by foreign key (TRUNCATE refused)', async () => {
    const before = await filenode('parent')
    await copy('parent', true)
    await expectDonorRows('parent')
    expect(await filenode('parent')).toBe(before)
  })

  it('deletes when a writer holds the table, instead of waiting on it', async () => {
    await local(`UPDATE plain SET v = 'old' WHERE id = 1`)
    const writer = await connect(server.conninfo({ dbname: 'dst' }), 'join-empty-writer')
    try {
      await writer.query('BEGIN')
      await writer.query('LOCK TABLE plain IN ROW EXCLUSIVE MODE')
      const before = await filenode('plain')
      const t0 = Date.now()
      await copy('plain', true)
      expect(Date.now() - t0).toBeLessThan(10_000)
      expect(await filenode('plain')).toBe(before)
      await expectDonorRows('plain')
    } finally {
      await writer.end()
    }
  })

  it('copies a partitioned table (out through a query: COPY refuses the table itself)', async () => {
    await local(`INSERT INTO sales VALUES (1, 'eu', 'old'), (1000, 'us', 'old')`)
    await copy('sales', true)
    await expectDonorRows('sales')
  })

  it('deletes in a resync (truncate off): readers of a live node keep reading', async () => {
    await local(`UPDATE plain SET v = 'old' WHERE id = 2`)
    const before = await filenode('plain')
    await copy('plain', false)
    expect(await filenode('plain')).toBe(before)
    await expectDonorRows('plain')
  })
})
