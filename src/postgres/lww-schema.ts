// The schema objects of row-level last-writer-wins (lww.ts has the design): the conflict queue,
// the ledger and the resolution round, as one idempotent script run at every start.

/** the channel a queued conflict is announced on (a static name: no quoting needed) */
export const QUEUED_CHANNEL = 'trktr_conflict_queued'
/** a notification on QUEUED_CHANNEL whose payload starts so: a replicated table was truncated here */
export const TRUNCATED = 'truncated '
/**
 * a notification on QUEUED_CHANNEL whose payload starts so: a round resolved a conflict on a
 * unique index besides the key of that replicated table ("schema.table"), which may leave it
 * different between nodes (a change to the displaced row arriving while it was out of the way
 * is skipped here): the arbiter checks the table soon
 */
export const UNIQUE_RESOLVED = 'unique '

/**
 * a notification on QUEUED_CHANNEL whose payload starts so: an apply worker here kept this
 * node's value of a column stored out of line under another origin's change of that
 * replicated table ("schema.table"), queued in trktr.kept_values: the arbiter compares the
 * row with its writer's copy
 */
export const KEPT = 'kept '

/** Queue, ledger and the resolution round; idempotent (run at every start). */
export const LWW_DDL = `
CREATE TABLE IF NOT EXISTS trktr.conflict_queue (
  qid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  relid oid NOT NULL,
  kind text NOT NULL,
  key jsonb NOT NULL,
  local_image jsonb,
  local_ts timestamptz,
  local_roident oid,
  remote_image jsonb,
  applying_roident oid NOT NULL
);
-- the displaced version in the row type's own text form: restored exactly (jsonb cannot tell a
-- jsonb column's JSON null from SQL NULL); the jsonb image is for the ledger
-- (checked first: ALTER TABLE would take an exclusive lock on the queue at every start, behind
-- any apply worker queueing a row)
DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = 'trktr.conflict_queue'::regclass
                 AND attname = 'local_row' AND NOT attisdropped) THEN
    ALTER TABLE trktr.conflict_queue ADD COLUMN local_row text;
  END IF;
END $do$;
-- one row per key a node resolved: both versions (origin node, origin commit timestamp, image)
CREATE TABLE IF NOT EXISTS trktr.resolutions (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  relation text NOT NULL,
  key jsonb NOT NULL,
  kind text NOT NULL,
  action text NOT NULL,
  entries integer NOT NULL DEFAULT 1,
  winner_node integer, winner_ts timestamptz, winner_image jsonb,
  loser_node integer, loser_ts timestamptz, loser_image jsonb
);
CREATE INDEX IF NOT EXISTS resolutions_at ON trktr.resolutions (at);
-- rows an apply worker updated over another origin's version while keeping this node's value
-- of a column stored out of line (PostgreSQL sends a value an UPDATE did not change as
-- "unchanged"): the row may now hold a value its writer never had; the arbiter compares it
-- with the writer's copy and takes that (lww-kept.ts)
CREATE TABLE IF NOT EXISTS trktr.kept_values (
  relid oid NOT NULL,
  key jsonb NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (relid, key)
);
-- the keys deleted here lately, a row per delete (its xmin is the deleting transaction, so
-- its origin and commit time), kept a while (lww-tombstones.ts): a check that finds a row on
-- some nodes and not on others reads them to tell a delete a node never applied from a row
-- written again after a delete. Appended only, no key index: every DELETE pays for each
-- tombstone, a check reads them rarely; the block range index serves the pruning by age
CREATE TABLE IF NOT EXISTS trktr.tombstones (
  relid oid NOT NULL,
  key jsonb NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS tombstones_at ON trktr.tombstones USING brin (at);
REVOKE ALL ON trktr.conflict_queue, trktr.resolutions, trktr.kept_values, trktr.tombstones FROM PUBLIC;
-- the first key queued into an empty queue wakes the arbiter (LISTEN ${QUEUED_CHANNEL}) instead
-- of its polling the queue; later ones find it awake (a NOTIFY takes a cluster-wide lock at
-- commit: one per applied transaction serialised the apply workers, lag x4 in the lww bench).
-- A key queued beside one the round is deleting waits for the fallback tick. ALWAYS, as the
-- rows come from apply workers (session_replication_role = replica); made once (CREATE
-- TRIGGER would lock the queue at every start, behind any apply worker queueing a row)
CREATE OR REPLACE FUNCTION trktr.conflict_queued() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM trktr.conflict_queue q WHERE q.qid < NEW.qid) THEN
    PERFORM pg_notify('${QUEUED_CHANNEL}', '');
  END IF;
  RETURN NULL;
END $fn$;
DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = 'trktr.conflict_queue'::regclass
                 AND tgname = 'trktr_queued') THEN
    CREATE TRIGGER trktr_queued AFTER INSERT ON trktr.conflict_queue
      FOR EACH ROW EXECUTE FUNCTION trktr.conflict_queued();
    ALTER TABLE trktr.conflict_queue ENABLE ALWAYS TRIGGER trktr_queued;
  END IF;
END $do$;

-- a table's name as the arbiter writes it (ident.ts formatRelation: quoted only where needed),
-- in the notifications below
CREATE OR REPLACE FUNCTION trktr.display_relation(r oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT string_agg(CASE WHEN p.x ~ '^[a-z_][a-z0-9_$]*$' THEN p.x
                         ELSE '"' || replace(p.x, '"', '""') || '"' END, '.' ORDER BY p.o)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
         unnest(ARRAY[n.nspname::text, c.relname::text]) WITH ORDINALITY AS p(x, o)
   WHERE c.oid = r
$fn$;

-- a replicated table truncated here (lww-local.ts, TRUNCATE_TRIGGER): the arbiter checks it;
-- not the arbiter's own truncates (a join's copy)
CREATE OR REPLACE FUNCTION trktr.lww_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  IF current_setting('application_name') ~ '^traktor-[0-9]+-' THEN RETURN NULL; END IF;
  PERFORM pg_notify('${QUEUED_CHANNEL}', '${TRUNCATED}' || trktr.display_relation(TG_RELID));
  RETURN NULL;
END $fn$;

-- the replica triggers' WHEN clause (lww.ts OTHER_ORIGIN): the version of the row that a change
-- replaces came from another origin than the one this apply worker applies from (the trigger
-- function records that origin in trktr.apply_roident on its first call; before, this is
-- true). Called for every row an apply worker updates or deletes, so no SET clause (it added
-- ~0.7 µs a row to an update loop's ~9): every name is qualified, and only sessions in the
-- replica role run it — apply workers, whose search_path is empty, and the arbiter's own.
CREATE OR REPLACE FUNCTION trktr.lww_other_origin(x xid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN (pg_catalog.pg_xact_commit_timestamp_origin(x)).roident IS DISTINCT FROM
         NULLIF(pg_catalog.current_setting('trktr.apply_roident', true), '')::oid;
END $fn$;

-- the node behind a replication origin: 0 = written here; pg_<subscription oid> = the peer of
-- trktr_sub_<self>_<peer>; trktr_lww_<n> = a version of node n restored by a resolution
CREATE OR REPLACE FUNCTION trktr.origin_node(ro oid) RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT CASE
    WHEN ro = 0 THEN (SELECT node_id FROM trktr.node)
    WHEN o.roname LIKE 'trktr\\_lww\\_%' THEN substr(o.roname, 11)::integer
    ELSE (SELECT substring(s.subname FROM '^trktr_sub_[0-9]+_([0-9]+)$')::integer
          FROM pg_subscription s WHERE 'pg_' || s.oid = o.roname)
  END
  FROM (SELECT ro) r LEFT JOIN pg_replication_origin o ON o.roident = r.ro
$fn$;

-- version order: the later origin commit timestamp wins; on a tie the higher node id; a
-- version without a timestamp (frozen, or written before track_commit_timestamp) is oldest
CREATE OR REPLACE FUNCTION trktr.newer(ts1 timestamptz, n1 integer, ts2 timestamptz, n2 integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE WHEN ts1 IS NULL THEN false WHEN ts2 IS NULL THEN true
              WHEN ts1 <> ts2 THEN ts1 > ts2 ELSE coalesce(n1, -1) > coalesce(n2, -1) END
$fn$;

-- One resolution round, local to this node. Per key the row must end holding the newest of its
-- current version and every displaced version. COMMITs per key (a procedure, CALLed outside a
-- transaction), so a long queue never holds locks for long.
CREATE OR REPLACE PROCEDURE trktr.lww_resolve(INOUT restored integer DEFAULT 0,
                                              INOUT recorded integer DEFAULT 0)
LANGUAGE plpgsql AS $fn$
DECLARE
  hi bigint; k record; act text; rel text; relid oid;
  cur_xmin xid; cur_ts timestamptz; cur_node integer; cur_img jsonb;
  cols text; rcols text; pkx text; pkr text; n integer;
  u record; conds text; ctids tid[]; beats boolean;
BEGIN
  restored := 0; recorded := 0;
  SELECT max(qid) INTO hi FROM trktr.conflict_queue;
  IF hi IS NULL THEN RETURN; END IF;
  -- a row moved out of an incoming row's way on a unique index besides the key (lww.ts,
  -- displaceSql) comes back if it is newer than the row that displaced it and than every row
  -- now holding its key or its values on a unique index (those are removed: they lost); else
  -- it lost. One entry at a time, each in its own transaction. A change to the displaced row
  -- that arrived while it was out of the way was skipped here (no row to change), so the round
  -- may put back or leave out a version the other nodes have moved past: each such table is
  -- announced (UNIQUE_RESOLVED) and the arbiter has it checked across the nodes soon.
  FOR u IN SELECT q.qid, q.relid, q.kind, q.key, q.local_image, q.local_row, q.local_ts,
                  trktr.origin_node(q.local_roident) AS lnode, q.remote_image,
                  c.timestamp AS a_ts, trktr.origin_node(c.roident) AS a_node
             FROM trktr.conflict_queue q, pg_catalog.pg_xact_commit_timestamp_origin(q.xmin) c
            WHERE q.qid <= hi AND q.kind IN ('unique_insert', 'unique_update')
              AND to_regclass(q.relid::regclass::text) IS NOT NULL
            ORDER BY q.qid
  LOOP
    rel := u.relid::regclass::text;
    act := NULL; ctids := NULL; cur_img := NULL; cur_ts := NULL; cur_node := NULL;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
      INTO cols, rcols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = u.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
    SELECT string_agg(format('((%s) %s (%s))', m.xs,
                             CASE WHEN i.indnullsnotdistinct THEN 'IS NOT DISTINCT FROM' ELSE '=' END, m.rs), ' OR ')
      INTO conds
      FROM pg_catalog.pg_index i,
           LATERAL (SELECT string_agg('x.' || quote_ident(a.attname), ', ' ORDER BY ik.o) AS xs,
                           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY ik.o) AS rs
                      FROM unnest(i.indkey::int2[]) WITH ORDINALITY ik(num, o)
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ik.num
                     WHERE ik.o <= i.indnkeyatts) m
     WHERE i.indrelid = u.relid AND i.indisunique AND i.indisvalid
       AND i.indpred IS NULL AND i.indexprs IS NULL;
    -- the rows the displaced version would collide with now, locked, and whether it beats them all
    EXECUTE format($q$
      SELECT array_agg(s.ctid), coalesce(bool_and(trktr.newer($2, $3, s.ts, s.node)), true),
             (array_agg(s.img))[1], (array_agg(s.ts))[1], (array_agg(s.node))[1]
        FROM (SELECT x.ctid, to_jsonb(x.*) AS img,
                     (pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).timestamp AS ts,
                     trktr.origin_node((pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).roident) AS node
                FROM %1$s x, (SELECT (($1::text)::%1$s).*) r WHERE %2$s FOR UPDATE OF x) s$q$, rel, conds)
      INTO ctids, beats, cur_img, cur_ts, cur_node USING u.local_row, u.local_ts, u.lnode;
    IF trktr.newer(u.local_ts, u.lnode, u.a_ts, u.a_node) AND beats THEN
      IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = 'trktr_lww_' || u.lnode) THEN
        PERFORM pg_catalog.pg_replication_origin_create('trktr_lww_' || u.lnode);
      END IF;
      PERFORM pg_catalog.pg_replication_origin_session_setup('trktr_lww_' || u.lnode);
      PERFORM pg_catalog.pg_replication_origin_xact_setup('0/0', u.local_ts);
      IF ctids IS NOT NULL THEN
        EXECUTE format('DELETE FROM %s x WHERE x.ctid = ANY ($1)', rel) USING ctids;
      ELSE
        cur_img := u.remote_image; cur_ts := u.a_ts; cur_node := u.a_node;
      END IF;
      EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM (SELECT (($1::text)::%s).*) r',
                     rel, cols, rcols, rel) USING u.local_row;
      act := 'restored';
      restored := restored + 1;
      INSERT INTO trktr.resolutions (relation, key, kind, action, winner_node, winner_ts, winner_image,
                                     loser_node, loser_ts, loser_image)
      VALUES (rel, u.key, replace(u.kind, 'unique_', '') || '_exists', act, u.lnode, u.local_ts, u.local_image,
              cur_node, cur_ts, cur_img);
    ELSE
      act := 'current wins';
      IF NOT trktr.newer(u.local_ts, u.lnode, u.a_ts, u.a_node) OR cur_img IS NULL THEN
        cur_img := u.remote_image; cur_ts := u.a_ts; cur_node := u.a_node;
      END IF;
      INSERT INTO trktr.resolutions (relation, key, kind, action, winner_node, winner_ts, winner_image,
                                     loser_node, loser_ts, loser_image)
      VALUES (rel, u.key, replace(u.kind, 'unique_', '') || '_exists', act, cur_node, cur_ts, cur_img,
              u.lnode, u.local_ts, u.local_image);
    END IF;
    recorded := recorded + 1;
    DELETE FROM trktr.conflict_queue WHERE qid = u.qid;
    PERFORM pg_catalog.pg_notify('${QUEUED_CHANNEL}', '${UNIQUE_RESOLVED}' || trktr.display_relation(u.relid));
    COMMIT;
    IF act = 'restored' THEN PERFORM pg_catalog.pg_replication_origin_session_reset(); END IF;
  END LOOP;
  -- fast path, one statement per table: an update whose displaced version is not newer than the
  -- row's current one needs nothing (a sequential change of writer, or a loser already
  -- overtaken); if it was newer than the version applied over it, it was a conflict: ledger
  FOR relid IN SELECT DISTINCT q.relid FROM trktr.conflict_queue q WHERE q.qid <= hi
                 AND to_regclass(q.relid::regclass::text) IS NOT NULL LOOP
    rel := relid::regclass::text;
    SELECT string_agg('x.' || quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
      INTO pkx, pkr
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
     WHERE a.attrelid = relid AND a.attnum = ANY (i.indkey);
    EXECUTE format($q$
      WITH gone AS (
        DELETE FROM trktr.conflict_queue q USING %1$s x
         WHERE q.relid = %2$s AND q.qid <= %3$s AND q.kind = 'update_origin_differs'
           AND (%4$s) = (SELECT %5$s FROM jsonb_populate_record(NULL::%1$s, q.key) r)
           AND NOT trktr.newer(q.local_ts, trktr.origin_node(q.local_roident),
                 (pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).timestamp,
                 trktr.origin_node((pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).roident))
        RETURNING q.*, (pg_catalog.pg_xact_commit_timestamp_origin(q.xmin)).timestamp AS a_ts,
                  trktr.origin_node((pg_catalog.pg_xact_commit_timestamp_origin(q.xmin)).roident) AS a_node,
                  (pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).timestamp AS c_ts,
                  trktr.origin_node((pg_catalog.pg_xact_commit_timestamp_origin(x.xmin)).roident) AS c_node,
                  to_jsonb(x.*) AS c_img)
      INSERT INTO trktr.resolutions (relation, key, kind, action, winner_node, winner_ts, winner_image,
                                     loser_node, loser_ts, loser_image)
      SELECT %6$L, g.key, g.kind, 'current wins', g.c_node, g.c_ts, g.c_img,
             trktr.origin_node(g.local_roident), g.local_ts, g.local_image
        FROM gone g
       WHERE trktr.newer(g.local_ts, trktr.origin_node(g.local_roident), g.a_ts, g.a_node)
    $q$, rel, relid, hi, pkx, pkr, rel);
    GET DIAGNOSTICS n = ROW_COUNT;
    recorded := recorded + n;
  END LOOP;
  COMMIT;
  -- entries of tables that are gone: nothing to resolve
  DELETE FROM trktr.conflict_queue q WHERE q.qid <= hi AND to_regclass(q.relid::regclass::text) IS NULL;
  COMMIT;
  -- per key: what is left (inserts on an existing key, deletes, displaced versions newer than
  -- the current row)
  FOR k IN
    SELECT q.relid, q.key, array_agg(q.qid) AS qids, count(*)::integer AS n,
           string_agg(DISTINCT q.kind, ',') AS kinds,
           bool_or(q.kind IN ('insert_exists', 'update_exists') OR (q.kind <> 'delete_origin_differs'
                   AND trktr.newer(q.local_ts, q.lnode, q.a_ts, q.a_node))) AS late,
           bool_or(q.kind = 'delete_origin_differs' AND trktr.newer(q.local_ts, q.lnode, q.a_ts, q.a_node)) AS del_conflict,
           (array_agg(q.local_image ORDER BY q.local_ts DESC NULLS LAST, q.lnode DESC NULLS LAST) FILTER (WHERE q.kind <> 'delete_origin_differs'))[1] AS d_image,
           (array_agg(q.local_row ORDER BY q.local_ts DESC NULLS LAST, q.lnode DESC NULLS LAST) FILTER (WHERE q.kind <> 'delete_origin_differs'))[1] AS d_row,
           (array_agg(q.local_ts    ORDER BY q.local_ts DESC NULLS LAST, q.lnode DESC NULLS LAST) FILTER (WHERE q.kind <> 'delete_origin_differs'))[1] AS d_ts,
           (array_agg(q.lnode       ORDER BY q.local_ts DESC NULLS LAST, q.lnode DESC NULLS LAST) FILTER (WHERE q.kind <> 'delete_origin_differs'))[1] AS d_node,
           (array_agg(q.a_ts   ORDER BY q.qid DESC) FILTER (WHERE q.kind = 'delete_origin_differs'))[1] AS del_ts,
           (array_agg(q.a_node ORDER BY q.qid DESC) FILTER (WHERE q.kind = 'delete_origin_differs'))[1] AS del_node,
           (array_agg(q.local_image ORDER BY q.qid DESC) FILTER (WHERE q.kind = 'delete_origin_differs'))[1] AS del_image,
           (array_agg(q.local_ts ORDER BY q.qid DESC) FILTER (WHERE q.kind = 'delete_origin_differs'))[1] AS del_loser_ts,
           (array_agg(q.lnode ORDER BY q.qid DESC) FILTER (WHERE q.kind = 'delete_origin_differs'))[1] AS del_loser_node
      FROM (SELECT cq.*, trktr.origin_node(cq.local_roident) AS lnode,
                   c.timestamp AS a_ts, trktr.origin_node(c.roident) AS a_node
              FROM trktr.conflict_queue cq, pg_catalog.pg_xact_commit_timestamp_origin(cq.xmin) c
             WHERE cq.qid <= hi) q
     GROUP BY q.relid, q.key
  LOOP
    act := NULL; cur_ts := NULL; cur_node := NULL; cur_img := NULL; cur_xmin := NULL;
    rel := k.relid::regclass::text;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg('x.' || quote_ident(a.attname), ', ' ORDER BY a.attnum) FILTER (WHERE a.pk),
           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY a.attnum) FILTER (WHERE a.pk)
      INTO cols, rcols, pkx, pkr
      FROM (SELECT a.*, a.attnum = ANY (i.indkey) AS pk
              FROM pg_catalog.pg_attribute a
              JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
             WHERE a.attrelid = k.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') a;
    IF k.d_ts IS NOT NULL THEN
      EXECUTE format('SELECT x.xmin, to_jsonb(x.*) FROM %s x WHERE (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1) r) FOR UPDATE',
                     rel, pkx, pkr, rel)
         INTO cur_xmin, cur_img USING k.key;
      IF cur_xmin IS NULL THEN
        act := 'delete wins';
      ELSE
        SELECT c.timestamp, trktr.origin_node(c.roident) INTO cur_ts, cur_node
          FROM pg_catalog.pg_xact_commit_timestamp_origin(cur_xmin) c;
        IF trktr.newer(k.d_ts, k.d_node, cur_ts, cur_node) THEN
          -- restore the displaced version under its writer's origin and commit timestamp: not
          -- re-published to origin = none subscribers, the same (timestamp, node) everywhere
          IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = 'trktr_lww_' || k.d_node) THEN
            PERFORM pg_catalog.pg_replication_origin_create('trktr_lww_' || k.d_node);
          END IF;
          PERFORM pg_catalog.pg_replication_origin_session_setup('trktr_lww_' || k.d_node);
          PERFORM pg_catalog.pg_replication_origin_xact_setup('0/0', k.d_ts);
          -- every column, the key's too: equal keys may be written differently (numeric 2.50, 2.5);
          -- from the row's text form where the queue has it (exact), else from the jsonb image
          IF k.d_row IS NOT NULL THEN
            EXECUTE format('UPDATE %s x SET (%s) = (SELECT %s FROM (SELECT (($1::text)::%s).*) r) '
                           'WHERE (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $2) r)',
                           rel, cols, rcols, rel, pkx, pkr, rel)
              USING k.d_row, k.key;
          ELSE
            EXECUTE format('UPDATE %s x SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1) r) '
                           'WHERE (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $2) r)',
                           rel, cols, rcols, rel, pkx, pkr, rel)
              USING k.d_image, k.key;
          END IF;
          act := 'restored';
          restored := restored + 1;
        ELSIF k.late THEN
          act := 'current wins';
        END IF;
      END IF;
    ELSIF k.del_conflict THEN
      act := 'delete wins';
      cur_ts := k.del_ts; cur_node := k.del_node; cur_img := NULL;
      k.d_ts := k.del_loser_ts; k.d_node := k.del_loser_node; k.d_image := k.del_image;
    END IF;
    IF act IS NOT NULL THEN
      INSERT INTO trktr.resolutions (relation, key, kind, action, entries, winner_node, winner_ts, winner_image,
                                     loser_node, loser_ts, loser_image)
      VALUES (rel, k.key, k.kinds, act, k.n,
              CASE WHEN act = 'restored' THEN k.d_node ELSE cur_node END,
              CASE WHEN act = 'restored' THEN k.d_ts ELSE cur_ts END,
              CASE WHEN act = 'restored' THEN k.d_image ELSE cur_img END,
              CASE WHEN act = 'restored' THEN cur_node ELSE k.d_node END,
              CASE WHEN act = 'restored' THEN cur_ts ELSE k.d_ts END,
              CASE WHEN act = 'restored' THEN cur_img ELSE k.d_image END);
      recorded := recorded + 1;
    END IF;
    DELETE FROM trktr.conflict_queue WHERE qid = ANY (k.qids);
    COMMIT;
    IF act = 'restored' THEN PERFORM pg_catalog.pg_replication_origin_session_reset(); END IF;
  END LOOP;
END $fn$;
`
