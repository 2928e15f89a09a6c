// What `traktor demo` does to its own servers, as a user would with psql: a database, the
// arbiter's role, a table to replicate, one row per node, and the check that every node holds
// the same rows (md5 of every column of every row).
import { createHash } from 'node:crypto'
import type { EmbeddedPostgres } from './embedded.js'
import { quoteIdent } from './ident.js'

export interface DemoSchema {
  db: string
  role: string
  password: string
  /** always demo.greetings: the schema is created here */
  table: 'demo.greetings'
}

/** Database, SUPERUSER login role, schema and table owned by the role. */
export async function prepareDemoServer(pg: EmbeddedPostgres, s: DemoSchema): Promise<void> {
  await pg.query(`CREATE DATABASE ${quoteIdent(s.db)}`)
  // the server quotes the password (format %L): never paste text into SQL
  const [r] = await pg.query<{ sql: string }>(
    `SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', $1::text, $2::text) AS sql`,
    [s.role, s.password],
  )
  await pg.query(String(r?.sql))
  const role = quoteIdent(s.role)
  await pg.query(`CREATE SCHEMA demo AUTHORIZATION ${role}`, [], { dbname: s.db })
  await pg.query(
    `CREATE TABLE demo.greetings (id text PRIMARY KEY, node int NOT NULL, message text,
       at timestamptz NOT NULL DEFAULT now());
     ALTER TABLE demo.greetings OWNER TO ${role}`,
    [],
    { dbname: s.db },
  )
}

export async function writeGreeting(pg: EmbeddedPostgres, db: string, node: number): Promise<void> {
  await pg.query(
    'INSERT INTO demo.greetings (id, node, message) VALUES ($1, $2, $3)',
    [`hello-${node}`, node, `written on node ${node}`],
    { dbname: db },
  )
}

export async function enabledSubscriptions(pg: EmbeddedPostgres, db: string): Promise<number> {
  const [r] = await pg.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_subscription WHERE subenabled',
    [],
    { dbname: db },
  )
  return r?.n ?? 0
}

/** The greetings' ids, and the md5 of every column of every row in one order. */
export async function greetings(
  pg: EmbeddedPostgres,
  db: string,
): Promise<{ ids: Set<string>; md5: string }> {
  const rows = await pg.query<{ id: string; row: string }>(
    'SELECT id, g::text AS row FROM demo.greetings g ORDER BY id',
    [],
    { dbname: db },
  )
  const md5 = createHash('md5')
    .update(rows.map((r) => r.row).join('\n'))
    .digest('hex')
  return { ids: new Set(rows.map((r) => r.id)), md5 }
}
