// A table change applied on this node in one round trip: trktr.apply_proposal records and
// decides the proposal (the publish step) or finds it (recovery), and unless it was applied
// already adds the table to, or drops it from, the publication and the replicaset and moves
// the version, all in the one transaction of its call. Every commit step is on the path of
// every change, and these were seven round trips. The function is (re)made once per process
// (a node initialised by an older arbiter has none yet; a teardown drops it).
import type { Db } from './db.js'
import { quoteLiteral } from './ident.js'
import { PUBLICATION } from './schema.js'

const FUNCTION = `
CREATE OR REPLACE FUNCTION trktr.apply_proposal(
  p_id text, p_version integer, p_op text, p_schema name, p_table name, p_columns text[],
  p_coordinator integer, p_decide boolean) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  done boolean;
  published boolean;
BEGIN
  IF p_decide THEN
    INSERT INTO trktr.proposals AS p
      (id, version, op, schema_name, table_name, columns, coordinator, decision, decided)
    VALUES (p_id, p_version, p_op, p_schema, p_table, p_columns, p_coordinator, 'commit', now())
    ON CONFLICT (id) DO UPDATE SET decision = COALESCE(p.decision, 'commit'),
                                   decided = COALESCE(p.decided, now())
    RETURNING p.applied INTO done;
  ELSE
    SELECT p.applied INTO done FROM trktr.proposals p WHERE p.id = p_id FOR UPDATE;
  END IF;
  IF done THEN RETURN false; END IF;
  published := EXISTS (SELECT 1 FROM pg_publication_tables t WHERE t.pubname = ${quoteLiteral(PUBLICATION)}
                         AND t.schemaname = p_schema AND t.tablename = p_table);
  IF p_op = 'add' THEN
    IF NOT published THEN
      EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', ${quoteLiteral(PUBLICATION)}, p_schema, p_table);
    END IF;
    INSERT INTO trktr.replicaset (schema_name, table_name, status, committed)
    VALUES (p_schema, p_table, 'committed', now())
    ON CONFLICT (schema_name, table_name) DO UPDATE SET status = 'committed', committed = now();
  ELSE
    IF published THEN
      EXECUTE format('ALTER PUBLICATION %I DROP TABLE %I.%I', ${quoteLiteral(PUBLICATION)}, p_schema, p_table);
    END IF;
    DELETE FROM trktr.replicaset WHERE schema_name = p_schema AND table_name = p_table;
  END IF;
  UPDATE trktr.cluster SET replicaset_version = greatest(replicaset_version, p_version);
  UPDATE trktr.proposals SET applied = true WHERE id = p_id;
  RETURN true;
END $fn$`

const made = new WeakMap<Db, Promise<unknown>>()

function make(db: Db, again = false): Promise<unknown> {
  let m = made.get(db)
  if (!m || again) {
    m = db.query(FUNCTION)
    made.set(db, m)
    m.catch(() => made.delete(db))
  }
  return m
}

export interface TableChange {
  id: string
  version: number
  op: 'add' | 'remove'
  schema: string
  table: string
  columns: readonly string[]
  coordinator: number
}

/**
 * Apply a table change here; `decide`: record it and decide COMMIT first (unless decided).
 * Idempotent: applying twice changes nothing. Returns whether this call applied it.
 */
export async function applyTableChange(db: Db, p: TableChange, decide: boolean): Promise<boolean> {
  const call = async () => {
    const [r] = await db.query<{ applied: boolean }>(
      `SELECT trktr.apply_proposal($1, $2, $3, $4, $5, $6, $7, $8) AS applied`,
      [p.id, p.version, p.op, p.schema, p.table, p.columns, p.coordinator, decide],
    )
    return r?.applied === true
  }
  await make(db)
  return await call().catch(async (err: { sqlState?: string }) => {
    if (err.sqlState !== '42883') throw err // not "no such function" (a teardown dropped it)
    await make(db, true)
    return await call()
  })
}
