// Row-level resolution that keeps failing is a health reason, not only a log line: while it
// fails, rows in conflict stay different between nodes, and status must not say "healthy".
// The loop here runs on a node whose queue and ledger were never made (the failure), then
// they are made and the reason goes. Real PostgreSQL 17.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { LWW_DDL } from '../../src/postgres/lww-schema.js'
import { LwwEngine } from '../../src/resolver/lww-engine.js'
import { localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { prepareTutorialNode } from '../fixtures/tutorial.js'

let pg: PgServer

beforeAll(async () => {
  ;[pg] = (await startServers(1, () => ({ name: 'lwwhealth', fast: true }))) as [PgServer]
  await prepareTutorialNode(pg)
})

afterAll(async () => {
  await pg?.destroy()
})

describe('the lww loop and the node health', () => {
  it('names failing resolution as a reason while it fails, and no more once it works', async () => {
    const { local, close } = await localNode(pg, 0)
    const engine = new LwwEngine({ local, log: silentLogger(), tickMs: 3_600_000 })
    try {
      await local.initNode()
      engine.start()
      expect(await engine.tick()).toMatch(/^cycle failed: .*conflict_queue/)
      expect(engine.healthReasons()).toEqual([]) // not for the first few seconds
      const [reason] = engine.healthReasons(0)
      expect(reason).toMatch(
        /^row-level conflict resolution has failed for [\d.]+ s \(cycle failed: /,
      )
      // the queue and ledger made: the next cycle works and the reason is gone
      const s = await local.hold()
      try {
        await s.query(LWW_DDL)
      } finally {
        s.release()
      }
      expect(await engine.tick()).toBe('no conflicts queued')
      expect(engine.healthReasons(0)).toEqual([])
    } finally {
      await engine.stop()
      await close()
    }
  })
})
