// Apply workers lose deadlocks to local transactions less often. Two transactions that lock the
// same rows in opposite orders deadlock; PostgreSQL cancels the one whose deadlock_timeout runs
// out first, nearly always the one that began to wait first. On hot rows that is most often
// the apply worker (the soak: 65 of 88 such deadlocks per node), and an apply worker that fails
// disables its subscription (disable_on_error) until the resolver enables it again: the peer's
// whole stream stands still for a second or two, where the local writer, cancelled instead,
// only retries its own transaction (as any application must on 40P01).
//
// Apply workers run as the subscriptions' owner, the arbiter's role, and read that role's
// settings in this database when they start (pg_db_role_setting), so the role waits longer
// before it checks for a deadlock here: APPLY_DEADLOCK_TIMEOUT, twice PostgreSQL's default.
// The price: a deadlock between two apply workers (from different peers) is found after 2 s,
// not 1. A deadlock_timeout the role already has here (an operator's) is left alone, as is a
// server whose own is as long. The arbiter's own sessions run as the role too and wait as long.
import type { Db, Queryable } from './db.js'
import { quoteIdent } from './ident.js'

export const APPLY_DEADLOCK_TIMEOUT_MS = 2000
const SETTING = `deadlock_timeout=${APPLY_DEADLOCK_TIMEOUT_MS}ms`

/** SQLSTATE insufficient_privilege */
const NOT_PERMITTED = '42501'

/** The database, the role's own deadlock_timeout here (if any), and the value in force. */
const STATE = `
SELECT current_database() AS db,
       (SELECT c FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase,
               unnest(s.setconfig) c
         WHERE d.datname = current_database() AND s.setrole = current_user::regrole
           AND c LIKE 'deadlock\\_timeout=%' LIMIT 1) AS own,
       (SELECT setting::int8 FROM pg_settings WHERE name = 'deadlock_timeout') AS ms`

export type ApplyDeadlocks = 'set' | 'operator' | 'server' | 'not permitted'

/**
 * The role's apply workers wait APPLY_DEADLOCK_TIMEOUT before checking for a deadlock here
 * ('set', also when set before), unless the role has a value of its own ('operator') or the
 * server's is as long ('server'); 'not permitted': the role may not set it.
 */
export async function preferApplyWorkers(q: Queryable): Promise<ApplyDeadlocks> {
  const [s] = (await q.query<{ db: string; own: string | null; ms: string }>(STATE)).rows
  if (!s) return 'not permitted'
  if (s.own === SETTING) return 'set'
  if (s.own !== null) return 'operator'
  if (Number(s.ms) >= APPLY_DEADLOCK_TIMEOUT_MS) return 'server'
  try {
    await q.query(
      `ALTER ROLE CURRENT_USER IN DATABASE ${quoteIdent(s.db)} SET deadlock_timeout = '${APPLY_DEADLOCK_TIMEOUT_MS}ms'`,
    )
    return 'set'
  } catch (err) {
    if ((err as { code?: string }).code === NOT_PERMITTED) return 'not permitted'
    throw err
  }
}

/** The role's setting taken back (the node leaves traktor), if it is the one set here. */
export async function stopPreferringApplyWorkers(db: Db): Promise<void> {
  const [s] = await db.query<{ db: string; own: string | null }>(STATE)
  if (!s || s.own !== SETTING) return
  await db
    .query(`ALTER ROLE CURRENT_USER IN DATABASE ${quoteIdent(s.db)} RESET deadlock_timeout`)
    .catch(() => undefined)
}
