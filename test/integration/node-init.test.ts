// Issue 8, weak items: initialising with a role that lacks what the arbiter needs says exactly
// which grants are missing (and changes nothing); an arbiter whose own login is refused answers
// 503 with the reason, not 500. Real PostgreSQL 17; HTTP through inject().
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { API_KEY, dbSnapshot, localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { prepareTutorialNode, TUTORIAL_DB } from '../fixtures/tutorial.js'

let pg: PgServer

beforeAll(async () => {
  ;[pg] = (await startServers(1, () => ({ name: 'init', fast: true }))) as [PgServer]
  await prepareTutorialNode(pg)
  await pg.query(`CREATE ROLE weak LOGIN PASSWORD 'weak-password'`)
})

afterAll(async () => {
  await pg?.destroy()
})

describe('initialisation by a role that is not superuser', () => {
  it('answers 409 listing the exact statements to run, and changes nothing', async () => {
    const { app, close } = await localNode(pg, 0, { user: 'weak', password: 'weak-password' })
    try {
      const before = await dbSnapshot(pg)
      const r = await app.inject({
        method: 'PUT',
        url: '/v1/arbiter/control',
        headers: { 'x-api-key': API_KEY },
      })
      expect(r.statusCode, r.body).toBe(409)
      const body = r.json()
      expect(body.error).toBe('ERR_GRANTS_MISSING')
      expect(body.message).toMatch(/ALTER ROLE "weak" REPLICATION/)
      expect(body.message).toMatch(/GRANT pg_create_subscription TO "weak"/)
      expect(body.message).toMatch(
        new RegExp(`GRANT CREATE ON DATABASE "${TUTORIAL_DB}" TO "weak"`),
      )
      expect(body.message).toMatch(
        /GRANT EXECUTE ON FUNCTION pg_catalog.pg_current_logfile\(text\)/,
      )
      expect(await dbSnapshot(pg)).toBe(before)
    } finally {
      await close()
    }
  })
})

describe('an arbiter whose own PostgreSQL login is refused', () => {
  it('answers 503 naming the config key, not 500', async () => {
    const { app, close } = await localNode(pg, 0, { user: 'weak', password: 'not-the-password' })
    try {
      const r = await app.inject({
        method: 'GET',
        url: '/v1/arbiter/status',
        headers: { 'x-api-key': API_KEY },
      })
      expect(r.statusCode, r.body).toBe(503)
      expect(r.json().message).toMatch(
        /cannot use its PostgreSQL \(check "postgres" in its config\)/,
      )
      expect(r.json().sql_state).toBe('28P01')
    } finally {
      await close()
    }
  })
})
