// The write fence that closes PostgreSQL's silent-loss window while a table joins or leaves
// the publications: from before any publication changes until every subscription has
// refreshed, writers to the table wait (they do not fail). A statement trigger takes a shared
// advisory lock that the arbiter holds exclusively for the fence's duration. Apply workers
// run with session_replication_role = replica, so ordinary triggers do not fire for them and
// replication keeps flowing. The lock belongs to one connection: if the arbiter dies, the
// server releases it and writers go on.
import pg from 'pg'
import { clientConfig, pgError } from './db.js'
import { qualified, quoteIdent, type RelationName } from './ident.js'

const LOCK_CLASS = 29810
const TRIGGER = 'trktr_fence'

export class Fence {
  private client: pg.Client | undefined
  private readonly conninfo: string
  private readonly appName: string
  readonly rel: RelationName

  constructor(init: { conninfo: string; nodeId: number; rel: RelationName }) {
    this.conninfo = init.conninfo
    this.appName = `traktor-${init.nodeId}-fence`
    this.rel = init.rel
  }

  get held(): boolean {
    return this.client !== undefined
  }

  /** Take the lock, then install the trigger (in-flight writers finish first). */
  async raise(): Promise<void> {
    if (this.client) return
    const client = new pg.Client(clientConfig(this.conninfo, this.appName))
    client.on('error', () => {})
    try {
      await client.connect()
      const [oid] = (
        await client.query<{ oid: number }>(`SELECT to_regclass($1)::oid::int AS oid`, [
          qualified(this.rel),
        ])
      ).rows
      if (!oid?.oid) throw new Error(`table ${qualified(this.rel)} does not exist`)
      await client.query(`SELECT pg_advisory_lock($1, $2)`, [LOCK_CLASS, oid.oid])
      await client.query(`SET lock_timeout = '5s'`)
      await client.query(`DROP TRIGGER IF EXISTS ${TRIGGER} ON ${qualified(this.rel)}`)
      await client.query(
        `CREATE TRIGGER ${TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${qualified(this.rel)}
         FOR EACH STATEMENT EXECUTE FUNCTION trktr.fence_wait()`,
      )
      this.client = client
    } catch (err) {
      await client.end().catch(() => undefined)
      throw pgError(err, `fence ${qualified(this.rel)}`)
    }
  }

  /** Release the lock first (waiting writers hold locks DROP TRIGGER needs), then the trigger. */
  async lower(): Promise<void> {
    const client = this.client
    if (!client) return
    this.client = undefined
    try {
      await client.query(`SELECT pg_advisory_unlock_all()`)
      await client.query(`DROP TRIGGER IF EXISTS ${TRIGGER} ON ${qualified(this.rel)}`)
    } catch (err) {
      throw pgError(err, `unfence ${qualified(this.rel)}`)
    } finally {
      await client.end().catch(() => undefined)
    }
  }
}

/** Drop fence triggers a crashed arbiter left behind (they no longer block anyone). */
export async function dropStaleFences(query: (sql: string) => Promise<unknown[]>): Promise<number> {
  const rows = (await query(
    `SELECT n.nspname AS schema, c.relname AS table FROM pg_trigger t
     JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE t.tgname = '${TRIGGER}'`,
  )) as Array<{ schema: string; table: string }>
  for (const r of rows) {
    await query(
      `DROP TRIGGER IF EXISTS ${TRIGGER} ON ${quoteIdent(r.schema)}.${quoteIdent(r.table)}`,
    )
  }
  return rows.length
}
