// Switching an existing subscription: refresh it (pick up tables its publisher added), stop
// its apply worker, enable it again with the tables it missed while stopped, skip a failing
// remote transaction. Subscriptions are made and dropped in subscriptions.ts, which exports
// these too.
import { type Db, type HeldSession, pgError } from './db.js'
import { checkLsn, quoteIdent, quoteLiteral } from './ident.js'
import { PUBLICATION } from './schema.js'
import { oneAtATime } from './turns.js'

/** a refresh opens a connection to the publisher; one that cannot be reached fails in time */
export const REFRESH_TIMEOUT_MS = 10_000

/**
 * Pick up tables added to / removed from the peer's publication (no copy: peers agree). The
 * publisher's connection has no connect_timeout of its own (an unreachable host takes minutes),
 * so the statement is bounded; REFRESH cannot run in a transaction, hence a session setting.
 */
export async function refresh(db: Db, name: string): Promise<void> {
  await oneAtATime(db, name, async () => refreshOn(await db.hold(), name))
}

/** The refresh on a held session, which it releases (closed if its settings are unknown). */
async function refreshOn(s: HeldSession, name: string): Promise<void> {
  let clean = false
  try {
    await s.query(`SET statement_timeout = ${REFRESH_TIMEOUT_MS}`)
    await s.query(
      `ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = false)`,
    )
    await s.query('RESET statement_timeout')
    clean = true
  } catch (err) {
    clean = await s.query('RESET statement_timeout').then(
      () => true,
      () => false,
    )
    throw pgError(err, `refresh ${name}`)
  } finally {
    s.release(!clean)
  }
}

/** Stop a subscription's apply worker; its changes wait in the peer's slot. */
export async function disable(db: Db, name: string): Promise<void> {
  await oneAtATime(db, name, () => db.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`))
}

/** Tables this node publishes that the subscription does not list yet (quoted, qualified). */
const UNLISTED = `
SELECT format('%I.%I', n.nspname, c.relname) AS rel
  FROM pg_publication p
  JOIN pg_publication_rel pr ON pr.prpubid = p.oid
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1
   AND NOT EXISTS (SELECT 1 FROM pg_subscription s
                     JOIN pg_subscription_rel sr ON sr.srsubid = s.oid
                    WHERE s.subname = $2 AND sr.srrelid = pr.prrelid)
 ORDER BY 1`

/**
 * Enable a subscription. While it was disabled it could not be refreshed (PostgreSQL refuses
 * REFRESH on a disabled subscription), so tables that joined the replicaset meanwhile may be
 * missing from it, and an apply worker skips for good a change to a table its subscription
 * does not list: the peer's rows of that table would never arrive. So when tables are missing,
 * they are locked (EXCLUSIVE: the worker's writes wait, the refresh's reads do not) while the
 * subscription is enabled and refreshed; the worker applies those changes only after the
 * refresh committed. If the refresh fails, the subscription is disabled again before the lock
 * goes (the caller retries), rather than left to skip.
 */
export async function enable(db: Db, name: string): Promise<void> {
  await oneAtATime(db, name, () => enableNow(db, name))
}

async function enableNow(db: Db, name: string): Promise<void> {
  const q = quoteIdent(name)
  const unlisted = await db.query<{ rel: string }>(UNLISTED, [PUBLICATION, name])
  if (unlisted.length === 0) {
    await db.query(`ALTER SUBSCRIPTION ${q} ENABLE`)
    return
  }
  // the lock's transaction must stay open while REFRESH, which cannot run in one, runs on a
  // second session: both are taken together
  const [lock, other] = await db.holdTwo()
  try {
    await lock.query('BEGIN')
    await lock.query(`SET LOCAL lock_timeout = '10s'`)
    await lock.query(`LOCK TABLE ${unlisted.map((r) => r.rel).join(', ')} IN EXCLUSIVE MODE`)
    // committed at once (a disabled subscription cannot be refreshed)
    await other.query(`ALTER SUBSCRIPTION ${q} ENABLE`)
    try {
      await refreshOn(other, name)
    } catch (err) {
      await db.query(`ALTER SUBSCRIPTION ${q} DISABLE`)
      throw err
    }
    await lock.query('COMMIT')
  } catch (err) {
    await lock.query('ROLLBACK').catch(() => undefined)
    throw pgError(err, `enable ${name} with its missing tables`)
  } finally {
    other.release()
    lock.release()
  }
}

/** Skip the whole failing remote transaction (TRAKTOR's "local write wins"). */
export async function skip(db: Db, name: string, lsn: string): Promise<void> {
  const sql = `ALTER SUBSCRIPTION ${quoteIdent(name)} SKIP (lsn = ${quoteLiteral(checkLsn(lsn))})`
  await oneAtATime(db, name, () => db.query(sql))
}

/** Whether a subscription is enabled; undefined when there is none of that name. */
export async function isEnabled(db: Db, name: string): Promise<boolean | undefined> {
  const [s] = await db.query<{ enabled: boolean }>(
    `SELECT subenabled AS enabled FROM pg_subscription WHERE subname = $1`,
    [name],
  )
  return s?.enabled
}
