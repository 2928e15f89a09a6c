// The resolver against real servers, beyond the tutorial's conflict: an apply error that is
// not a conflict is recorded and left alone; a publisher that shuts down is re-enabled and
// never skipped; a subscription an operator disabled stays disabled, even when an unprivileged
// user makes the server log lines that copy an apply worker's (issue 8, item 4).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import type { LocalNode } from '../../src/postgres/local.js'
import { Resolver } from '../../src/resolver/resolver.js'
import { waitFor } from '../fixtures/arbiters.js'
import { createForgerRole, type ForgedEvent, Forger, waitLogged } from '../fixtures/forge.js'
import { localNode } from '../fixtures/node.js'
import { destroyServers, type PgServer, startServers } from '../fixtures/pg.js'
import { peerConninfo, prepareTutorialNode, REPTEST, TUTORIAL_DB } from '../fixtures/tutorial.js'

let pgs: PgServer[] = []
const nodes: Array<{ local: LocalNode; close: () => Promise<void> }> = []
let resolver: Resolver

const q = (i: number, sql: string, params: unknown[] = []) =>
  (pgs[i] as PgServer).query(sql, params, { dbname: TUTORIAL_DB })
const L = (i: number) => (nodes[i] as { local: LocalNode }).local
const subOf = async (i: number) =>
  (await q(i, `SELECT subenabled FROM pg_subscription`))[0]?.subenabled as boolean

/**
 * A subscriber-side trigger on node 1 (`name`: the trigger and its function) that refuses the
 * row with this id: SQLSTATE P0001, an apply error that is not a conflict.
 */
async function refuseRow(name: string, id: number, message: string): Promise<void> {
  await q(
    1,
    `SET event_triggers = off;
    CREATE FUNCTION multimaster.${name}() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN IF NEW.id = ${id} THEN RAISE EXCEPTION '${message}'; END IF; RETURN NEW; END $$;
    CREATE TRIGGER ${name} BEFORE INSERT ON multimaster.reptest FOR EACH ROW EXECUTE FUNCTION multimaster.${name}();
    ALTER TABLE multimaster.reptest ENABLE ALWAYS TRIGGER ${name};`,
  )
}

/** The operator's fix: the trigger dropped, the subscription enabled, the refused row in. */
async function unrefuse(name: string, id: number): Promise<void> {
  await q(1, `SET event_triggers = off; DROP TRIGGER ${name} ON multimaster.reptest`)
  await q(1, `ALTER SUBSCRIPTION trktr_sub_1_0 ENABLE`)
  await waitFor(
    async () => (await q(1, 'SELECT 1 FROM multimaster.reptest WHERE id = $1', [id])).length === 1,
    10_000,
    `row ${id}`,
  )
}

beforeAll(async () => {
  pgs = await startServers(2, (i) => ({ name: `resolver${i}`, fast: true }))
  for (const [i, pg] of pgs.entries()) {
    await prepareTutorialNode(pg)
    await pg.query(REPTEST, [], { dbname: TUTORIAL_DB })
    nodes[i] = await localNode(pg, i)
    await L(i).initNode()
  }
  await L(0).subscribe(1, peerConninfo((pgs[1] as PgServer).port))
  await L(1).subscribe(0, peerConninfo((pgs[0] as PgServer).port))
  for (const i of [0, 1]) await L(i).stage({ schema: 'multimaster', table: 'reptest' }, 'add')
  for (const i of [0, 1]) await L(i).commit()
  for (const i of [0, 1]) {
    await waitFor(
      async () => (await q(i, 'SELECT count(*)::int AS n FROM pg_subscription_rel'))[0]?.n === 1,
      10_000,
      'refresh',
    )
  }
  // only node 1 runs a resolver here; ticks are driven by the test
  resolver = new Resolver({
    local: L(1),
    strategy: 'skip',
    intervalMs: 3_600_000,
    log: silentLogger(),
  })
})

afterAll(async () => {
  await resolver?.stop()
  for (const n of nodes) await n.close()
  await destroyServers(pgs)
})

describe('resolver', () => {
  it('records an apply error that is not a conflict and does not skip it', async () => {
    // a subscriber-side trigger that refuses one row: SQLSTATE P0001, not a conflict
    await refuseRow('refuse', 42, 'refused by the subscriber')
    await q(0, `INSERT INTO multimaster.reptest VALUES (42, 'x')`)
    await waitFor(async () => !(await subOf(1)), 10_000, 'subscription disabled by the error')
    await waitFor(async () => (await resolver.tick()).includes('record'), 10_000, 'record verdict')
    const [h] = await L(1).history()
    expect(h).toMatchObject({
      subscription: 'trktr_sub_1_0',
      sqlStateCode: 'P0001',
      kind: 'error',
      action: 'none',
      resolved: null,
    })
    expect(h?.reason).toContain('refused by the subscriber')
    expect(await subOf(1)).toBe(false)
    const status = await L(1).status()
    expect(status).toMatchObject({ is_replicating: false, conflicts_pending: 1, is_tainted: false })
    // a second cycle does not act on the same failure again
    expect(await resolver.tick()).toMatch(/^no action/)

    // the operator fixes it and enables; the row arrives and the issue counts as resolved
    await unrefuse('refuse', 42)
    await waitFor(
      async () => (await resolver.tick()).includes('confirmed resolved'),
      10_000,
      'resolved',
    )
    expect((await L(1).status()).conflicts_pending).toBe(0)
  })

  it('re-enables a subscription whose publisher shut down, without recording a conflict', async () => {
    const before = (await L(1).history()).length
    await (pgs[0] as PgServer).stop()
    await waitFor(async () => !(await subOf(1)), 15_000, 'disabled by the lost publisher')
    await waitFor(
      async () => (await resolver.tick()).startsWith('enable trktr_sub_1_0 (08'),
      10_000,
      'enable verdict',
    )
    expect(await subOf(1)).toBe(true)
    expect((await L(1).history()).length).toBe(before)
    await (pgs[0] as PgServer).start()
    await q(0, `INSERT INTO multimaster.reptest VALUES (43, 'back')`)
    await waitFor(
      async () => (await q(1, 'SELECT 1 FROM multimaster.reptest WHERE id = 43')).length === 1,
      20_000,
      'row 43 after restart',
    )
  })

  it('acts on a failure logged in the file of a run between two restarts of its server', async () => {
    // each start of the server logs to a new file; the reader finishes the file it read last
    // before it takes the current one, so a run it never read was lost with what it held
    const verdicts: string[] = []
    const restart = async () => {
      await (pgs[1] as PgServer).stop()
      await (pgs[1] as PgServer).start()
      // the first cycle may fail on a pooled connection the restart broke
      await waitFor(
        async () =>
          !(verdicts[verdicts.push(await resolver.tick()) - 1] as string).startsWith(
            'cycle failed',
          ),
        10_000,
        'a cycle after the restart',
      )
    }
    await resolver.tick()
    await restart()
    const middle = Date.now()
    await refuseRow('refuse2', 44, 'refused in the middle run')
    await q(0, `INSERT INTO multimaster.reptest VALUES (44, 'middle')`)
    await waitFor(async () => !(await subOf(1)), 10_000, 'subscription disabled by the error')
    // a new file's name has the second its run started in: the next run starts in another
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - middle))))
    verdicts.length = 0
    await restart()
    await waitFor(
      async () =>
        verdicts.some((v) => v.includes('record trktr_sub_1_0 (P0001)')) ||
        verdicts.push(await resolver.tick()) < 0,
      10_000,
      'the failure of the middle run recorded',
    ).catch((err: Error) => {
      throw new Error(`${err.message}; verdicts: ${[...new Set(verdicts)].join(' | ')}`)
    })
    expect((await L(1).history())[0]?.reason).toContain('refused in the middle run')
    await unrefuse('refuse2', 44)
    const md5 = async (i: number) =>
      (
        await q(
          i,
          `SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS h FROM multimaster.reptest t`,
        )
      )[0]?.h
    expect(await md5(1)).toBe(await md5(0))
  })

  it('leaves a subscription an operator disabled alone', async () => {
    await q(1, `ALTER SUBSCRIPTION trktr_sub_1_0 DISABLE`)
    for (let i = 0; i < 3; i++) await resolver.tick()
    expect(await subOf(1)).toBe(false)
    await q(1, `ALTER SUBSCRIPTION trktr_sub_1_0 ENABLE`)
  })
})

describe('log lines forged by an unprivileged user (issue 8, item 4)', () => {
  // The operator has disabled the subscription; a role with no grant on trktr makes the server
  // log what an apply worker logs on a conflict or a lost publisher. Nothing may happen: no
  // ENABLE, no skip LSN, no history row (which would also be gossiped to every node).
  let forger: Forger
  let context: string
  let n = 0
  const SUB = 'trktr_sub_1_0'

  beforeAll(async () => {
    await createForgerRole(pgs[1] as PgServer)
    forger = await Forger.connect(pgs[1] as PgServer, TUTORIAL_DB)
    const [s] = await q(1, `SELECT oid::int8 AS oid FROM pg_subscription WHERE subname = $1`, [SUB])
    context =
      `processing remote data for replication origin "pg_${s?.oid}" during message type ` +
      `"INSERT" for replication target relation "public.t" in transaction 748, finished at ` +
      `0/DEADBEEF`
  })

  afterAll(async () => {
    await forger?.close()
  })

  /** the events, the last one carrying a marker to wait for; then several resolver cycles */
  async function leftAlone(events: (marker: string) => ForgedEvent[]): Promise<void> {
    await q(1, `ALTER SUBSCRIPTION ${SUB} DISABLE`)
    await resolver.tick() // everything logged before the attack is read
    const historyRows = async () =>
      (await q(1, 'SELECT count(*)::int AS n FROM trktr.history'))[0]?.n as number
    const before = await historyRows()
    const marker = `forged${++n}x${Date.now()}`
    for (const e of events(marker)) await forger.forge(e)
    await waitLogged(pgs[1] as PgServer, TUTORIAL_DB, marker)
    const verdicts: string[] = []
    for (let i = 0; i < 4; i++) verdicts.push(await resolver.tick())
    const [sub] = await q(
      1,
      `SELECT subenabled AS enabled, subskiplsn::text AS skip FROM pg_subscription
       WHERE subname = $1`,
      [SUB],
    )
    expect(sub).toEqual({ enabled: false, skip: '0/0' })
    expect(await historyRows()).toBe(before)
    // not even taken for a failure: only apply workers' records count (the server's apply
    // error count, which did not move either, is the second line of defence)
    expect(verdicts.map((v) => v.replace(/ \(.*/, ''))).toEqual(
      Array(4).fill('no action: 1 disabled, no new failure'),
    )
    await q(1, `ALTER SUBSCRIPTION ${SUB} ENABLE`)
  }

  it('a conflict CONTEXT echoed from the SQL text of a client EXECUTE is not a conflict', async () => {
    await leftAlone((marker) => [
      { kind: 'execute', sqlState: '23505', lines: `${context}\n${marker}` },
    ])
  })

  it('nor the German or the Japanese context, with a "disabled" line after it', async () => {
    const oid = /pg_(\d+)/.exec(context)?.[1]
    await leftAlone((marker) => [
      {
        kind: 'execute',
        sqlState: '23505',
        lines:
          `Verarbeiten empfangener Daten für Replication-Origin »pg_${oid}« bei Nachrichtentyp ` +
          `»INSERT« für Replikationszielrelation »public.t« in Transaktion 748, beendet bei 0/BAD1`,
      },
      { kind: 'warning', message: `Subskription »${SUB}« wurde wegen eines Fehlers deaktiviert` },
      {
        kind: 'execute',
        sqlState: '23514',
        lines:
          `0/BAD2で終了したトランザクション748中、レプリケーション先リレーション"public.t"に対する` +
          `メッセージタイプ"INSERT"でレプリケーション基点"pg_${oid}"のリモートからのデータを処理中\n${marker}`,
      },
    ])
  })

  it('an 08006 error and a "disabled" line from a client do not re-enable', async () => {
    await leftAlone((marker) => [
      {
        kind: 'raise',
        sqlState: '08006',
        message: 'could not receive data from WAL stream: server closed the connection',
      },
      {
        kind: 'warning',
        message: `subscription "${SUB}" has been disabled because of an error ${marker}`,
      },
    ])
  })

  it('a CHECK value, a DETAIL and a HINT with the context text record nothing', async () => {
    await leftAlone((marker) => [
      { kind: 'check', value: context },
      {
        kind: 'raise',
        sqlState: '23505',
        message: 'duplicate key value violates unique constraint "reptest_pk"',
        detail: context,
        hint: context,
      },
      {
        kind: 'warning',
        message: `subscription "${SUB}" has been disabled because of an error ${marker}`,
      },
    ])
  })
})
