// A removed node's slot on this publisher is dropped by whichever pass over the removal gets
// there first (the roster's merge, the reconcile pass): two at once must both succeed (CI once
// answered an operator's DELETE /v1/cluster/nodes/3 with "replication slot does not exist"),
// and a refresh whose subscription was dropped meanwhile is no failure.

import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Db } from '../../src/postgres/db.js'
import type { LocalNode } from '../../src/postgres/local.js'
import { Refresher } from '../../src/postgres/refresher.js'
import { localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import {
  ARBITER_PASSWORD,
  ARBITER_ROLE,
  prepareTutorialNode,
  TUTORIAL_DB,
} from '../fixtures/tutorial.js'

describe("a removed node's slot and subscription", () => {
  let server: PgServer
  let local: LocalNode
  let close: () => Promise<void>

  beforeAll(async () => {
    ;[server] = (await startServers(1, () => ({ name: 'slotdrop', fast: true }))) as [PgServer]
    await prepareTutorialNode(server)
    ;({ local, close } = await localNode(server, 0))
    await local.initNode()
  })

  afterAll(async () => {
    await close?.()
    await server?.destroy()
  })

  const slots = async () =>
    (
      await server.query(`SELECT slot_name FROM pg_replication_slots ORDER BY 1`, [], {
        dbname: TUTORIAL_DB,
      })
    ).map((r) => r.slot_name as string)

  it('two passes at once both succeed, and the slot is gone', async () => {
    for (let round = 0; round < 20; round++) {
      await server.query(
        `SELECT pg_create_logical_replication_slot('trktr_sub_5_0', 'pgoutput')`,
        [],
        {
          dbname: TUTORIAL_DB,
        },
      )
      const dropped = await Promise.all([
        local.dropSlotOf(5),
        local.dropSlotOf(5),
        local.dropSlotOf(5),
      ])
      // exactly one of them dropped it; the others found it gone
      expect(dropped.filter(Boolean).length, `round ${round}`).toBeLessThanOrEqual(1)
      expect(await slots()).not.toContain('trktr_sub_5_0')
    }
    // a slot that is not there is no error either
    expect(await local.dropSlotOf(6)).toBe(false)
  }, 60_000)

  it('so does dropping the subscription to a removed, unreachable node', async () => {
    const subs = async () =>
      (await server.query(`SELECT subname FROM pg_subscription`, [], { dbname: TUTORIAL_DB })).map(
        (r) => r.subname as string,
      )
    for (let round = 0; round < 5; round++) {
      // a subscription whose publisher cannot be reached: DROP SUBSCRIPTION cannot drop its
      // slot there, so the slot is detached first
      await server.query(
        `CREATE SUBSCRIPTION trktr_sub_0_5 CONNECTION 'host=/nonexistent dbname=x password=x' PUBLICATION trktr_pub WITH (connect = false); ALTER SUBSCRIPTION trktr_sub_0_5 OWNER TO traktor_arbiter`,
        [],
        { dbname: TUTORIAL_DB },
      )
      const r = await Promise.all([local.unsubscribe(5), local.unsubscribe(5)])
      expect(
        r.some((x) => x.existed),
        `round ${round}`,
      ).toBe(true)
      expect(await subs()).not.toContain('trktr_sub_0_5')
    }
  }, 60_000)

  it('a subscription dropped under a refresh is no failure, and nothing is logged as one', async () => {
    const lines: string[] = []
    const log = pino(
      { level: 'debug' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk))
          done()
        },
      }),
    )
    const db = new Db({
      conninfo: server.conninfo({
        dbname: TUTORIAL_DB,
        user: ARBITER_ROLE,
        password: ARBITER_PASSWORD,
      }),
      nodeId: 0,
      purpose: 'test',
    })
    db.start()
    try {
      const refresher = new Refresher({ db, nodeId: 0, log })
      // the list was read before the removal dropped the subscription
      const stale = {
        name: 'trktr_sub_0_8',
        oid: 0,
        enabled: true,
        skipLsn: '0/0',
        peer: 8,
        applyErrors: 0,
        statsReset: null,
      }
      await expect(refresher.all([stale as never])).resolves.toBeUndefined()
      await refresher.from(8)
      expect(lines.filter((l) => /"level":(40|50)/.test(l))).toEqual([])
    } finally {
      await db.stop()
    }
  })
})
