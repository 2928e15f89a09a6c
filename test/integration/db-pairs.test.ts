// A guarded enable holds two sessions of the arbiter's small pool: a lock and a refresh.
// Several taken at once must not each take one session and wait for ever for a second.
// Real PostgreSQL 17.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Db } from '../../src/postgres/db.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

let pg: PgServer
let db: Db

beforeAll(async () => {
  ;[pg] = (await startServers(1, () => ({ name: 'pairs', fast: true }))) as [PgServer]
  db = new Db({ conninfo: pg.conninfo(), nodeId: 0, purpose: 'pairs', max: 3 })
  db.start()
})

afterAll(async () => {
  await db?.stop()
  await pg?.destroy()
})

describe('Db.holdTwo', () => {
  it('gives every taker its pair, however many ask at once on a pool of three', async () => {
    const takers = Array.from({ length: 6 }, async (_, i) => {
      const [a, b] = await db.holdTwo()
      try {
        // both sessions are distinct backends, in use at the same time
        const [x] = (await a.query('SELECT pg_backend_pid() AS pid')).rows
        const [y] = (await b.query('SELECT pg_backend_pid() AS pid')).rows
        expect(x.pid).not.toBe(y.pid)
        return i
      } finally {
        b.release()
        a.release()
      }
    })
    const done = await Promise.race([
      Promise.all(takers),
      new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 10_000).unref()),
    ])
    expect(done).toEqual([0, 1, 2, 3, 4, 5])
  })
})
