// A fence whose trigger cannot be dropped when it is lowered (another session holds a lock on
// the table) leaves the trigger behind. It blocks no writer, but it must not stay on the
// table until the arbiter's next start: the recovery loop's sweep drops it once the lock is
// gone, and a table fenced again meanwhile keeps its new trigger.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Steps } from '../../src/cluster/steps.js'
import { silentLogger } from '../../src/log.js'
import type { Proposal } from '../../src/postgres/cluster-state.js'
import { FENCE_TRIGGER } from '../../src/postgres/fence.js'
import type { LocalNode } from '../../src/postgres/local.js'
import { localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { prepareTutorialNode, REPTEST, TUTORIAL_DB } from '../fixtures/tutorial.js'

describe('fence triggers left behind', () => {
  let server: PgServer
  let local: LocalNode
  let close: () => Promise<void>

  beforeAll(async () => {
    ;[server] = (await startServers(1, () => ({ name: 'sweep', fast: true }))) as [PgServer]
    await prepareTutorialNode(server)
    await server.query(REPTEST, [], { dbname: TUTORIAL_DB })
    ;({ local, close } = await localNode(server, 0))
    await local.initNode()
  })

  afterAll(async () => {
    await close?.()
    await server?.destroy()
  })

  const triggers = async () =>
    (
      await server.query(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = $1`,
        [FENCE_TRIGGER],
        {
          dbname: TUTORIAL_DB,
        },
      )
    )[0]?.n

  /** A superuser session of its own (to hold a lock on the table). */
  async function client(): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: server.port,
      database: TUTORIAL_DB,
      user: 'postgres',
      password: server.superPassword,
    })
    await c.connect()
    return c
  }

  const proposal = (id: string): Proposal => ({
    id,
    version: 1,
    op: 'add',
    schema: 'multimaster',
    table: 'reptest',
    columns: ['id:integer', 'payload:text'],
    coordinator: 1,
  })

  it('are dropped by the sweep once the lock that kept them is gone', async () => {
    const steps = new Steps({ local, nodeId: 0, log: silentLogger() })
    const p = proposal('00000000-0000-4000-8000-000000000001')
    expect(await steps.prepare(p)).toMatchObject({ ack: true })
    expect(await triggers()).toBe(1)
    // a reader holds the table while the fence is lowered: the trigger cannot be dropped
    const reader = await client()
    try {
      await reader.query('BEGIN')
      await reader.query('SELECT count(*) FROM multimaster.reptest')
      await steps.abort(p.id)
      expect(await triggers()).toBe(1)
      // the sweep cannot drop it either while the lock is held
      await steps.sweep()
      expect(await triggers()).toBe(1)
      await reader.query('COMMIT')
    } finally {
      await reader.end()
    }
    await steps.sweep()
    expect(await triggers()).toBe(0)
    // a writer is not held back meanwhile
    await server.query(`INSERT INTO multimaster.reptest VALUES (1, 'x')`, [], {
      dbname: TUTORIAL_DB,
    })
  })

  it('a table fenced again keeps its new fence', async () => {
    const steps = new Steps({ local, nodeId: 0, log: silentLogger() })
    const first = proposal('00000000-0000-4000-8000-000000000002')
    expect(await steps.prepare(first)).toMatchObject({ ack: true })
    const reader = await client()
    await reader.query('BEGIN')
    await reader.query('SELECT count(*) FROM multimaster.reptest')
    await steps.abort(first.id)
    await reader.query('COMMIT')
    await reader.end()
    // fenced again before any sweep: the trigger is the new fence's, and the sweep leaves it
    const second = proposal('00000000-0000-4000-8000-000000000003')
    expect(await steps.prepare(second)).toMatchObject({ ack: true })
    await steps.sweep()
    expect(await triggers()).toBe(1)
    await steps.abort(second.id)
    expect(await triggers()).toBe(0)
  })
})
