// traktor's objects in the local database: the trktr schema (history, replicaset, peers,
// node state), the publication, the event triggers that protect replicated tables, and the
// privileges the arbiter keeps after it gives up SUPERUSER (as TRAKTOR does).
import { ConflictError } from '../errors.js'
import type { Logger } from '../log.js'
import { type Db, prepared, type Queryable } from './db.js'
import { quoteIdent, quoteLiteral } from './ident.js'
import { stopLoggingMissingRows } from './missing-rows.js'

export const PUBLICATION = 'trktr_pub'
/**
 * The publication publishes a partitioned table's changes as changes of that table, not of the
 * partition they are in: a subscription lists the partitioned table only, so a partition made
 * later (on every node) replicates at once — through a partition's own name its rows were
 * skipped by subscribers that had not refreshed since (PostgreSQL applies only relations the
 * subscription lists, silently). Set on a publication made before, unless the replicaset
 * already holds a partitioned table (its subscriptions list the partitions: they would skip
 * the table's changes until refreshed).
 */
export const CREATE_PUBLICATION = `CREATE PUBLICATION ${quoteIdent(PUBLICATION)} WITH (publish_via_partition_root = true)`
const VIA_ROOT = `
DO $do$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = ${quoteLiteral(PUBLICATION)} AND NOT pubviaroot)
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
                      JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
                     WHERE p.pubname = ${quoteLiteral(PUBLICATION)} AND c.relkind = 'p') THEN
    ALTER PUBLICATION ${quoteIdent(PUBLICATION)} SET (publish_via_partition_root = true);
  END IF;
END $do$`
export const SCHEMA = 'trktr'

const SCHEMA_DDL = `
CREATE SCHEMA IF NOT EXISTS trktr;
REVOKE ALL ON SCHEMA trktr FROM PUBLIC;
CREATE TABLE IF NOT EXISTS trktr.node (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  node_id integer NOT NULL,
  initialized timestamptz NOT NULL DEFAULT now(),
  protected boolean NOT NULL DEFAULT false
);
-- one row per failed remote transaction per subscription: two peers may fail at one LSN
CREATE TABLE IF NOT EXISTS trktr.history (
  subscription text NOT NULL,
  lsn pg_lsn NOT NULL,
  occurred timestamptz NOT NULL DEFAULT now(),
  relation text,
  key text,
  value text,
  sql_state_code text NOT NULL,
  reason text,
  kind text NOT NULL CHECK (kind IN ('conflict', 'error')),
  action text CHECK (action IN ('skip', 'none')),
  attempts integer NOT NULL DEFAULT 0,
  resolved timestamptz,
  PRIMARY KEY (subscription, lsn)
);
CREATE TABLE IF NOT EXISTS trktr.replicaset (
  schema_name name NOT NULL,
  table_name name NOT NULL,
  status text NOT NULL CHECK (status IN ('pending-add', 'committed', 'pending-remove')),
  staged timestamptz NOT NULL DEFAULT now(),
  committed timestamptz,
  PRIMARY KEY (schema_name, table_name)
);
-- the peers this node subscribes to, with the connection string given for them; the
-- arbiter listens there for publication changes (standalone mode has no mesh to tell it)
CREATE TABLE IF NOT EXISTS trktr.peers (
  node_id integer PRIMARY KEY,
  conninfo text NOT NULL,
  created timestamptz NOT NULL DEFAULT now()
);
-- mesh mode: the replicaset version every member agrees on, the proposals that change it
-- (the coordinator's decision row is the commit point), and nodes removed from the cluster
CREATE TABLE IF NOT EXISTS trktr.cluster (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  replicaset_version integer NOT NULL DEFAULT 0
);
INSERT INTO trktr.cluster (singleton) VALUES (true) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS trktr.proposals (
  id text PRIMARY KEY,
  version integer NOT NULL,
  op text NOT NULL CHECK (op IN ('add', 'remove')),
  schema_name name NOT NULL,
  table_name name NOT NULL,
  columns text[] NOT NULL,
  coordinator integer NOT NULL,
  decision text CHECK (decision IN ('commit', 'abort')),
  applied boolean NOT NULL DEFAULT false,
  created timestamptz NOT NULL DEFAULT now(),
  decided timestamptz
);
-- on the coordinator: every member has run every commit step (applied is this node's part)
ALTER TABLE trktr.proposals ADD COLUMN IF NOT EXISTS completed boolean NOT NULL DEFAULT false;
-- cluster DDL (ddl.ts) is a proposal too: its statement and the tables it fences, creates, drops
ALTER TABLE trktr.proposals ADD COLUMN IF NOT EXISTS ddl jsonb;
-- a table that joins holding rows on some nodes: the node whose rows the empty ones copy
ALTER TABLE trktr.proposals ADD COLUMN IF NOT EXISTS copy jsonb;
ALTER TABLE trktr.proposals DROP CONSTRAINT IF EXISTS proposals_op_check;
ALTER TABLE trktr.proposals ADD CONSTRAINT proposals_op_check CHECK (op IN ('add', 'remove', 'ddl'));
-- the schema changes committed here: written inside the prepared transaction, so a row here
-- means the change committed (a commit that finds no prepared transaction checks here)
CREATE TABLE IF NOT EXISTS trktr.ddl_log (
  id text PRIMARY KEY,
  sql text NOT NULL,
  kind text NOT NULL,
  coordinator integer NOT NULL,
  prepared timestamptz NOT NULL DEFAULT now()
);
-- the cluster's commit mode (async | sync, the sync quorum), set for every member at once by a
-- cluster call; changed is the version members compare (the newest wins)
ALTER TABLE trktr.cluster ADD COLUMN IF NOT EXISTS commit_mode text
  CHECK (commit_mode IN ('async', 'sync'));
ALTER TABLE trktr.cluster ADD COLUMN IF NOT EXISTS commit_quorum integer CHECK (commit_quorum > 0);
ALTER TABLE trktr.cluster ADD COLUMN IF NOT EXISTS commit_changed bigint;
CREATE TABLE IF NOT EXISTS trktr.removed_nodes (
  node_id integer PRIMARY KEY,
  removed timestamptz NOT NULL DEFAULT now()
);
-- the roster: a node is removed while removed > readmitted; the newer of the two timestamps
-- wins when members merge what they know (a member that missed a removal learns it)
ALTER TABLE trktr.removed_nodes ADD COLUMN IF NOT EXISTS readmitted timestamptz;
-- the write fence (fence.ts): writers to a table wait while the arbiter holds its row here;
-- SECURITY DEFINER, so writers need no right on trktr (and no other role can hold the row)
CREATE TABLE IF NOT EXISTS trktr.fences (relid oid PRIMARY KEY);
-- cancel: a cluster DDL needs the table's lock, which writers waiting here hold; it sets cancel
-- as it lets them go, and they fail with a retryable serialization error instead of writing
-- rows of the old schema after the cluster drained them (README "Changing the schema")
ALTER TABLE trktr.fences ADD COLUMN IF NOT EXISTS cancel boolean NOT NULL DEFAULT false;
CREATE OR REPLACE FUNCTION trktr.fence_wait() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE cancelled boolean;
BEGIN
  SELECT cancel INTO cancelled FROM trktr.fences WHERE relid = TG_RELID FOR SHARE;
  IF cancelled THEN
    RAISE EXCEPTION 'traktor: a cluster schema change of %.% is running; retry the transaction',
      TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NULL;
END $fn$;
-- the consistency check's repairs (repair-store.ts): one row per key set to the winning
-- version on this node. Not in trktr.history: a repair has no failed remote transaction
-- (history's key), one transaction repairs many keys, and history's counts are the conflicts.
CREATE TABLE IF NOT EXISTS trktr.repairs (
  id bigserial PRIMARY KEY,
  occurred timestamptz NOT NULL DEFAULT now(),
  relation text NOT NULL,
  key text NOT NULL,
  action text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
  winner integer NOT NULL,
  winner_ts timestamptz,
  previous text,
  image text,
  rule text NOT NULL,
  check_id text NOT NULL,
  coordinator integer NOT NULL,
  lsn pg_lsn NOT NULL
);
-- lost slots healed (slot-healer.ts): the peer whose slot here was lost copied the cluster's
-- data again; listed in the ledger as kind "heal"
CREATE TABLE IF NOT EXISTS trktr.heals (
  id bigserial PRIMARY KEY,
  occurred timestamptz NOT NULL DEFAULT now(),
  slot text NOT NULL,
  peer integer NOT NULL,
  lsn pg_lsn NOT NULL
);
REVOKE ALL ON ALL TABLES IN SCHEMA trktr FROM PUBLIC;
-- snowflake-style ids (README "Ids and sequences"): 41 bits of milliseconds since 2025-01-01,
-- 10 bits of node id, 12 bits of a per-node counter; unique across nodes with no coordination
CREATE SEQUENCE IF NOT EXISTS trktr.next_id_counter MINVALUE 0 MAXVALUE 4095 START 0 CYCLE;
CREATE OR REPLACE FUNCTION trktr.next_id() RETURNS bigint LANGUAGE sql VOLATILE
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1735689600000) << 22)
       | (((SELECT node_id FROM trktr.node) % 1024)::bigint << 12)
       | nextval('trktr.next_id_counter')
$fn$;
`

// Refuse DROP and ALTER of a replicated table: dropping one silently breaks every peer's
// subscription, altering one makes the peers' apply fail on the next row; and DROP TRIGGER of
// its row-level resolution triggers. SECURITY DEFINER: whoever runs the DDL, the check reads
// trktr (closed to PUBLIC) as the arbiter role. The arbiter's own sessions may ALTER (it
// switches its replica triggers on and off) and drop those triggers.
const protectDdl = (role: string) => `
CREATE OR REPLACE FUNCTION trktr.refuse_drop() RETURNS event_trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE obj record;
BEGIN
  -- the arbiter's own cluster DDL (ddl.ts) drops a table and its replicaset row together
  IF session_user = ${quoteLiteral(role)} AND current_setting('trktr.cluster_ddl', true) = 'on' THEN
    RETURN;
  END IF;
  FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table' LOOP
    IF EXISTS (SELECT 1 FROM trktr.replicaset r
               WHERE r.schema_name = obj.schema_name AND r.table_name = obj.object_name
                 AND r.status <> 'pending-add') THEN
      RAISE EXCEPTION 'traktor: table % is replicated; drop it on every node at once with POST /v1/cluster/ddl (traktor ctl ddl "DROP TABLE ..."), or remove it from the replicaset first',
        obj.object_identity USING ERRCODE = 'object_in_use';
    END IF;
  END LOOP;
  -- row-level resolution's triggers (lww.ts): without them a replicated table's conflicts end
  -- in different rows on different nodes, silently; the arbiter makes and drops them itself
  IF session_user = ${quoteLiteral(role)} THEN RETURN; END IF;
  FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE object_type = 'trigger' AND starts_with(address_names[3], 'trktr_lww_') LOOP
    IF EXISTS (SELECT 1 FROM trktr.replicaset r
               WHERE r.schema_name = obj.address_names[1] AND r.table_name = obj.address_names[2]
                 AND r.status <> 'pending-add') THEN
      RAISE EXCEPTION 'traktor: trigger % resolves the conflicts of a replicated table; to go without it, set the table''s resolver (config "resolvers") or remove the table from the replicaset',
        obj.object_identity USING ERRCODE = 'object_in_use';
    END IF;
  END LOOP;
END $fn$;
CREATE OR REPLACE FUNCTION trktr.refuse_alter() RETURNS event_trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE obj record;
BEGIN
  IF session_user = ${quoteLiteral(role)} THEN RETURN; END IF;
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'ALTER TABLE' AND object_type = 'table' LOOP
    IF EXISTS (SELECT 1 FROM trktr.replicaset r
               JOIN pg_class c ON c.relname = r.table_name
               JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = r.schema_name
               WHERE c.oid = obj.objid AND r.status <> 'pending-add') THEN
      RAISE EXCEPTION 'traktor: table % is replicated; change it on every node at once with POST /v1/cluster/ddl (traktor ctl ddl "ALTER TABLE ...")',
        obj.object_identity USING ERRCODE = 'object_in_use';
    END IF;
  END LOOP;
END $fn$;
DROP EVENT TRIGGER IF EXISTS trktr_refuse_drop;
CREATE EVENT TRIGGER trktr_refuse_drop ON sql_drop EXECUTE FUNCTION trktr.refuse_drop();
DROP EVENT TRIGGER IF EXISTS trktr_refuse_alter;
CREATE EVENT TRIGGER trktr_refuse_alter ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION trktr.refuse_alter();
`

/** Functions the arbiter calls after it is no longer superuser (README: "Grants"). */
export const KEPT_FUNCTIONS = [
  'pg_catalog.pg_current_logfile(text)',
  'pg_catalog.pg_read_binary_file(text, bigint, bigint)',
  'pg_catalog.pg_replication_origin_progress(text, boolean)',
  'pg_catalog.pg_replication_origin_create(text)',
  'pg_catalog.pg_replication_origin_session_setup(text)',
  'pg_catalog.pg_replication_origin_session_reset()',
  'pg_catalog.pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)',
  // a joining node starts its subscriptions where its copy of the cluster's data ends
  'pg_catalog.pg_replication_origin_advance(text, pg_lsn)',
]

const ROLE_STATE = `
SELECT r.rolsuper, r.rolreplication, current_user AS role, current_database() AS db
FROM pg_roles r WHERE r.rolname = current_user`

const GRANTS = `
SELECT r.rolreplication AS replication,
       pg_has_role(current_user, 'pg_create_subscription', 'MEMBER') AS create_subscription,
       has_database_privilege(current_database(), 'CREATE') AS create_db,
       ARRAY(SELECT f FROM unnest($1::text[]) f WHERE NOT has_function_privilege(f, 'EXECUTE'))
         AS missing_functions
FROM pg_roles r WHERE r.rolname = current_user`

/**
 * What a role that is not superuser lacks to run the arbiter, each as the statement that grants
 * it (README: "The privileges the arbiter keeps").
 */
export async function missingGrants(db: Db, role: string, dbName: string): Promise<string[]> {
  const [g] = await db.query<{
    replication: boolean
    create_subscription: boolean
    create_db: boolean
    missing_functions: string[]
  }>(GRANTS, [KEPT_FUNCTIONS])
  if (!g) return [`the role ${role} does not exist`]
  const r = quoteIdent(role)
  const out: string[] = []
  if (!g.replication) out.push(`ALTER ROLE ${r} REPLICATION`)
  if (!g.create_subscription) out.push(`GRANT pg_create_subscription TO ${r}`)
  if (!g.create_db) out.push(`GRANT CREATE ON DATABASE ${quoteIdent(dbName)} TO ${r}`)
  for (const fn of g.missing_functions) out.push(`GRANT EXECUTE ON FUNCTION ${fn} TO ${r}`)
  return out
}

export interface InitResult {
  created: boolean
  protected: boolean
  superuserDropped: boolean
}

export interface SchemaInit {
  db: Db
  nodeId: number
  log: Logger
  /** give up SUPERUSER once the objects exist (TRAKTOR's behaviour; default true) */
  dropSuperuser?: boolean
}

/** Create (or complete) traktor's objects. Idempotent; safe to call on every start. */
export async function initNode(init: SchemaInit): Promise<InitResult> {
  const { db, nodeId, log } = init
  const [role] = await db.query<{ rolsuper: boolean; role: string; db: string }>(ROLE_STATE)
  if (!role) throw new Error('cannot read the arbiter role')
  const existed = await isInitialized(db)
  if (!role.rolsuper) {
    const missing = await missingGrants(db, role.role, role.db)
    if (missing.length > 0) {
      throw new ConflictError(
        `the arbiter role ${role.role} is not superuser and lacks what the arbiter needs; as a superuser run: ${missing.join('; ')}`,
        'ERR_GRANTS_MISSING',
      )
    }
  }
  let isProtected = false
  await db.tx(async (c) => {
    // one arbiter initialising at a time, also across processes
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('trktr.init'))`)
    await c.query(SCHEMA_DDL)
    await c.query(
      `INSERT INTO trktr.node (node_id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING`,
      [nodeId],
    )
    const pub = await c.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [PUBLICATION])
    if (pub.rowCount === 0) await c.query(CREATE_PUBLICATION)
    else await c.query(VIA_ROOT)
    if (role.rolsuper) {
      await c.query(protectDdl(role.role))
      await c.query(`UPDATE trktr.node SET protected = true`)
      await grantKept(c, role.role, role.db)
    }
    const [node] = (
      await c.query<{ protected: boolean; node_id: number }>(
        `SELECT protected, node_id FROM trktr.node`,
      )
    ).rows
    if (node && node.node_id !== nodeId) {
      throw new Error(`this database was initialised as node ${node.node_id}, not ${nodeId}`)
    }
    isProtected = node?.protected ?? false
  })
  let superuserDropped = false
  if (role.rolsuper && init.dropSuperuser !== false) {
    await db.query(`ALTER ROLE ${quoteIdent(role.role)} NOSUPERUSER`)
    superuserDropped = true
    log.info({ role: role.role }, 'dropped SUPERUSER from the arbiter role after initialisation')
  }
  if (!isProtected) {
    log.warn('replicated tables are not protected by event triggers: initialise as superuser')
  }
  return { created: !existed, protected: isProtected, superuserDropped }
}

async function grantKept(c: Queryable, role: string, dbName: string): Promise<void> {
  const r = quoteIdent(role)
  await c.query(`ALTER ROLE ${r} REPLICATION`)
  await c.query(`GRANT pg_create_subscription TO ${r}`)
  await c.query(`GRANT CREATE ON DATABASE ${quoteIdent(dbName)} TO ${r}`)
  for (const fn of KEPT_FUNCTIONS) await c.query(`GRANT EXECUTE ON FUNCTION ${fn} TO ${r}`)
  // the walsenders' state and lag (replication metrics, sync mode), hidden from other roles
  await c.query(`GRANT pg_read_all_stats TO ${r}`)
  // sync mode keeps synchronous_standby_names (ALTER SYSTEM) and nothing else of the server's
  await c.query(`GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO ${r}`)
  await c.query(`GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO ${r}`)
  // the join copy writes as an apply worker does: no ordinary trigger (fence, foreign key) fires
  await c.query(`GRANT SET ON PARAMETER session_replication_role TO ${r}`)
  // its apply workers report the UPDATEs and DELETEs they skip for want of the row at DEBUG1
  // (missing-rows.ts): the role's own log level in this database
  await c.query(`GRANT SET ON PARAMETER log_min_messages TO ${r}`)
}

const INITIALIZED = prepared(
  'initialized',
  `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'trktr' AND c.relname = 'node'`,
)

export async function isInitialized(db: Db): Promise<boolean> {
  const rows = await db.query(INITIALIZED)
  return rows.length > 0
}

const TEARDOWN = `
DROP EVENT TRIGGER IF EXISTS trktr_refuse_drop;
DROP EVENT TRIGGER IF EXISTS trktr_refuse_alter;
DROP PUBLICATION IF EXISTS trktr_pub;
DROP SCHEMA IF EXISTS trktr CASCADE;
`

/** Remove the publication, event triggers and schema (subscriptions are dropped first). */
export async function teardownNode(db: Db): Promise<void> {
  await stopLoggingMissingRows(db)
  await db.tx(async (c) => {
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('trktr.init'))`)
    await c.query(TEARDOWN)
  })
}
