// A part stopped while its PostgreSQL work was under way must not keep the arbiter from
// stopping. The soak saw an arbiter ignore SIGTERM for 15 s (then it was killed): the lww loop,
// woken by a queued key while it was being stopped, ran one more cycle and kept the session
// that cycle took, and the pool's end waits for every session out of it. Now a stopped loop
// runs no cycle, and the pool's stop closes a session still held (and says how many).
// Real PostgreSQL 17.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { Db } from '../../src/postgres/db.js'
import { LwwEngine } from '../../src/resolver/lww-engine.js'
import { localNode } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { prepareTutorialNode } from '../fixtures/tutorial.js'

let pg: PgServer

beforeAll(async () => {
  ;[pg] = (await startServers(1, () => ({ name: 'held', fast: true }))) as [PgServer]
  await prepareTutorialNode(pg)
})

afterAll(async () => {
  await pg?.destroy()
})

/** resolves with what p gave, or 'stuck' after ms */
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([
    p,
    new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), ms).unref()),
  ])

describe('stopping the pool', () => {
  it('closes a session still held instead of waiting for it for ever', async () => {
    const db = new Db({ conninfo: pg.conninfo(), nodeId: 0, purpose: 'held' })
    db.start()
    const kept = await db.hold() // never released by its taker
    await kept.query('SELECT 1')
    const released = await db.hold()
    released.release()
    expect(await within(db.stop(), 5000)).toBe(1)
    await expect(kept.query('SELECT 1')).rejects.toThrow()
  })

  it('closes nothing when every session came back', async () => {
    const db = new Db({ conninfo: pg.conninfo(), nodeId: 0, purpose: 'held' })
    db.start()
    const s = await db.hold()
    await s.query('SELECT 1')
    s.release()
    expect(await within(db.stop(), 5000)).toBe(0)
  })
})

describe('a stopped lww loop', () => {
  it('runs no cycle when woken after its stop', async () => {
    const { local, close } = await localNode(pg, 0)
    try {
      await local.initNode()
      const engine = new LwwEngine({ local, log: silentLogger(), tickMs: 3_600_000 })
      engine.start()
      expect(await engine.tick()).not.toBe('no action: stopped') // a cycle runs while started
      await engine.stop()
      // what a notice from the queue does after the stop
      expect(await engine.tick()).toBe('no action: stopped')
    } finally {
      expect(await within(close(), 5000)).not.toBe('stuck')
    }
  })
})
