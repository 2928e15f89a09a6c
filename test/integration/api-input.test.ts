// Bad input on every TRAKTOR route: a clear 4xx with a JSON reason, and no change in the
// database. Real PostgreSQL; the HTTP layer through inject().
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { API_KEY, dbSnapshot, localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { prepareTutorialNode, REPTEST, TUTORIAL_DB } from '../fixtures/tutorial.js'

let pg: PgServer
let app: FastifyInstance
let close: () => Promise<void>

const send = (
  method: string,
  url: string,
  opts: { key?: string | null; body?: string; type?: string } = {},
) =>
  app.inject({
    method: method as 'GET',
    url,
    headers: {
      ...(opts.key === null ? {} : { 'x-api-key': opts.key ?? API_KEY }),
      ...(opts.body === undefined ? {} : { 'content-type': opts.type ?? 'application/json' }),
    },
    ...(opts.body === undefined ? {} : { payload: opts.body }),
  })

beforeAll(async () => {
  ;[pg] = (await startServers(1, () => ({ name: 'input', fast: true }))) as [PgServer]
  await prepareTutorialNode(pg)
  await pg.query(REPTEST, [], { dbname: TUTORIAL_DB })
  await pg.query(
    `CREATE TABLE multimaster.nopk (id int, v text); ALTER TABLE multimaster.nopk OWNER TO traktor_arbiter`,
    [],
    { dbname: TUTORIAL_DB },
  )
  await pg.query(`CREATE TABLE multimaster.notmine (id int PRIMARY KEY)`, [], {
    dbname: TUTORIAL_DB,
  })
  ;({ app, close } = await localNode(pg, 0))
})

afterAll(async () => {
  await close?.()
  await pg?.destroy()
})

/** Send, expect the status and a JSON error body, and that the database did not change. */
async function refused(
  method: string,
  url: string,
  status: number,
  opts: Parameters<typeof send>[2] = {},
) {
  const before = await dbSnapshot(pg)
  const r = await send(method, url, opts)
  expect(r.statusCode, `${method} ${url} -> ${r.body}`).toBe(status)
  const body = r.json()
  expect(typeof body.error).toBe('string')
  expect(typeof body.message).toBe('string')
  expect(await dbSnapshot(pg)).toBe(before)
  return body
}

describe('API key', () => {
  it('refuses a missing key with 401 and a wrong key with 403, changing nothing', async () => {
    await refused('PUT', '/v1/arbiter/control', 401, { key: null })
    await refused('PUT', '/v1/arbiter/control', 403, { key: 'LetMeIn ' })
    await refused('GET', '/v1/arbiter/status', 403, { key: 'x'.repeat(5000) })
    expect((await send('GET', '/healthz', { key: null })).statusCode).toBe(200)
    expect((await send('GET', '/docs', { key: null })).json().openapi).toBe('3.1.0')
  })
})

describe('before initialisation', () => {
  it('answers 409 for replicaset and subscription calls', async () => {
    const b = await refused('PUT', '/v1/arbiter/replicaset/multimaster.reptest', 409)
    expect(b.error).toBe('ERR_NOT_INITIALIZED')
  })
})

describe('after initialisation', () => {
  beforeAll(async () => {
    expect((await send('PUT', '/v1/arbiter/control')).statusCode).toBe(201)
    // repeating it is not an error
    expect((await send('PUT', '/v1/arbiter/control')).statusCode).toBe(201)
  })

  it('refuses malformed and injection-shaped table names with 400', async () => {
    for (const name of [
      'reptest',
      'a.b.c',
      'multimaster.reptest;DROP TABLE x',
      encodeURIComponent(`multimaster.reptest"; DROP TABLE multimaster.reptest; --`),
      encodeURIComponent(`"unterminated.x`),
      encodeURIComponent(`multimaster.rep test`),
      encodeURIComponent(`multimaster.${'x'.repeat(64)}`),
      encodeURIComponent(`multimaster.'x'`),
      '.x',
    ]) {
      const b = await refused('PUT', `/v1/arbiter/replicaset/${name}`, 400)
      expect(b.error).toBe('ERR_TABLE_NAME')
      await refused('DELETE', `/v1/arbiter/replicaset/${name}`, 400)
    }
  })

  it('refuses unknown tables, tables without a primary key and tables it does not own with 409', async () => {
    let b = await refused('PUT', '/v1/arbiter/replicaset/multimaster.nosuch', 409)
    expect(b.message).toContain('does not exist')
    b = await refused('PUT', '/v1/arbiter/replicaset/multimaster.nopk', 409)
    expect(b.message).toContain('no primary key')
    b = await refused('PUT', '/v1/arbiter/replicaset/multimaster.notmine', 409)
    expect(b.message).toContain('owned by postgres')
    await refused('DELETE', '/v1/arbiter/replicaset/multimaster.nosuch', 409)
    // a quoted name is a different table: "Reptest" does not exist
    await refused(
      'PUT',
      `/v1/arbiter/replicaset/${encodeURIComponent('multimaster."Reptest"')}`,
      409,
    )
  })

  it('refuses bad subscription bodies with 400', async () => {
    const url = '/v1/arbiter/subscription/control'
    await refused('PUT', url, 400, { body: '{"inbound_node": 1, "connection_string": ' })
    await refused('PUT', url, 400, { body: '[1,2]' })
    await refused('PUT', url, 400, {
      body: '{"inbound_node": "one", "connection_string": "host=x"}',
    })
    await refused('PUT', url, 400, { body: '{"inbound_node": -1, "connection_string": "host=x"}' })
    await refused('PUT', url, 400, { body: '{"inbound_node": 0, "connection_string": "host=x"}' })
    await refused('PUT', url, 400, { body: '{"inbound_node": 1}' })
    const b = await refused('PUT', url, 400, {
      body: JSON.stringify({ inbound_node: 1, connection_string: "host=x password='unterminated" }),
    })
    expect(b.message).not.toContain("unterminated'")
    await refused('PUT', url, 400, {
      body: JSON.stringify({
        inbound_node: 1,
        connection_string: "host=x'; DROP TABLE multimaster.reptest; --",
      }),
    })
    await refused('PUT', url, 400, {
      body: JSON.stringify({ inbound_node: 1, connection_string: 'host=x dropdatabase=yes' }),
    })
    await refused('DELETE', url, 400, { body: '{}' })
  })

  it('answers 409 with the reason when the peer cannot be reached', async () => {
    const b = await refused('PUT', '/v1/arbiter/subscription/control', 409, {
      body: JSON.stringify({
        inbound_node: 1,
        connection_string:
          'host=127.0.0.1 port=1 dbname=x user=traktor_arbiter password=traktor connect_timeout=2',
      }),
    })
    expect(b.error).toBe('ERR_PEER_UNREACHABLE')
  })

  it('stages, commits and reports a table; repeating a PUT is not an error', async () => {
    expect((await send('PUT', '/v1/arbiter/replicaset/multimaster.reptest')).statusCode).toBe(201)
    expect((await send('PUT', '/v1/arbiter/replicaset/MultiMaster.RepTest')).statusCode).toBe(201)
    expect((await send('PATCH', '/v1/arbiter/replicaset', { body: '' })).statusCode).toBe(200)
    expect((await send('PUT', '/v1/arbiter/replicaset/multimaster.reptest')).statusCode).toBe(201)
    const s = (await send('GET', '/v1/arbiter/replicaset/status')).json()
    expect(s).toEqual({
      node: 0,
      replicaset: [{ relation: 'multimaster.reptest', status: 'committed' }],
    })
    const pub = await pg.query(
      `SELECT tablename FROM pg_publication_tables WHERE pubname = 'trktr_pub'`,
      [],
      { dbname: TUTORIAL_DB },
    )
    expect(pub).toEqual([{ tablename: 'reptest' }])
  })

  it('refuses DROP and ALTER of a replicated table, even by a superuser', async () => {
    const drop = pg.query('DROP TABLE multimaster.reptest', [], { dbname: TUTORIAL_DB })
    await expect(drop).rejects.toThrow(/replicated/)
    const alter = pg.query('ALTER TABLE multimaster.reptest ADD COLUMN x int', [], {
      dbname: TUTORIAL_DB,
    })
    await expect(alter).rejects.toThrow(/replicated/)
    // other tables are untouched by the protection
    await pg.query('ALTER TABLE multimaster.nopk ADD COLUMN x int', [], { dbname: TUTORIAL_DB })
  })

  it('unknown routes are a JSON 404', async () => {
    const r = await send('GET', '/v1/arbiter/nothing')
    expect(r.statusCode).toBe(404)
    expect(r.json().error).toBe('ERR_NO_ROUTE')
  })
})
