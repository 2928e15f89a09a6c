// The consistency check's reads on one node (the repair's writes are in repair-store.ts).
//
// Rows are put in buckets by a hash of their primary key, so every node puts a row in the same
// bucket without exchanging boundaries, and a bucket at more bits is a sub-bucket of the same
// bucket at fewer bits (narrowing nests). A bucket's fingerprint is its row count and the XOR
// of a 64-bit hash of each whole row: order-independent, so one sequential scan with a hash
// aggregate answers for the whole table, no sort, no transfer of rows. Hashes come from the
// types' own hash functions (hash_record_extended), about twice as fast as md5 over the row's
// text; a column whose type has no hash function, or a collation that is not deterministic,
// is hashed as its text in the "C" collation instead. Both ends must run PostgreSQL 17 on the
// same byte order (hash values are not portable across endianness; no cluster mixes them).
import { ConflictError, NotFoundError } from '../errors.js'
import type { Db, Queryable } from './db.js'
import { formatRelation, qualified, quoteIdent, type RelationName } from './ident.js'

export interface CheckColumn {
  name: string
  /** the server's own spelling of the type (format_type), used in column definition lists */
  type: string
  /** hashed by its type's hash function (else as text in the "C" collation) */
  hashable: boolean
  generated: boolean
  identityAlways: boolean
  /** position in the primary key (0-based), null for other columns */
  keyPos: number | null
}

export interface TableLayout {
  rel: RelationName
  relation: string
  columns: CheckColumn[]
  /** primary key columns, in the key's order */
  key: CheckColumn[]
  /** track_commit_timestamp is on: rows carry their origin's commit time */
  commitTs: boolean
}

// the settings that shape a value's text (keys in JSON, row images): the same on every node
const STABLE_TEXT = `
SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),
       set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true),
       set_config('bytea_output', 'hex', true), set_config('lc_monetary', 'C', true),
       set_config('statement_timeout', $1::text, true)`

const LAYOUT = `
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attgenerated <> '' AS generated, a.attidentity = 'a' AS identity_always,
       array_position(i.indkey::int2[], a.attnum) AS key_pos,
       (et.typtype = 'e' OR EXISTS (
          SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
          WHERE am.amname = 'hash' AND oc.opcdefault AND oc.opcintype = et.oid))
       AND (a.attcollation = 0 OR COALESCE(co.collisdeterministic, true)) AS hashable,
       current_setting('track_commit_timestamp')::bool AS commit_ts
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type ty ON ty.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
JOIN pg_type et ON et.oid = CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0
                                 THEN bt.typelem ELSE bt.oid END
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY a.attnum`

/** The table's columns and primary key as the check needs them. */
export async function tableLayout(db: Db, rel: RelationName): Promise<TableLayout> {
  const rows = await db.query<{
    name: string
    type: string
    generated: boolean
    identity_always: boolean
    key_pos: number | null
    hashable: boolean
    commit_ts: boolean
  }>(LAYOUT, [rel.schema, rel.table])
  const relation = formatRelation(rel)
  if (rows.length === 0) throw new NotFoundError(`table ${relation} does not exist`)
  const columns = rows.map((r) => ({
    name: r.name,
    type: r.type,
    hashable: r.hashable,
    generated: r.generated,
    identityAlways: r.identity_always,
    keyPos: r.key_pos,
  }))
  const key = columns
    .filter((c) => c.keyPos !== null)
    .sort((a, b) => (a.keyPos ?? 0) - (b.keyPos ?? 0))
  if (key.length === 0)
    throw new ConflictError(`table ${relation} has no primary key`, 'ERR_NO_PRIMARY_KEY')
  return { rel, relation, columns, key, commitTs: rows[0]?.commit_ts ?? false }
}

/** SQL fragments for one table, all from catalog names, every identifier quoted. */
export interface TableSql {
  table: string
  /** ROW(...) of the key columns of alias t, hashable form */
  keyRow: string
  /** ROW(...) of every column of alias t, hashable form */
  rowRow: string
  /** the key as a JSON object text, e.g. {"id": 5} */
  keyJson: string
  /** column definitions of the key for jsonb_to_record(set) */
  keyDefs: string
  /** t.k1 = <alias>.k1 AND ... */
  keyMatch: (alias: string) => string
  /** (t.k1, t.k2) */
  keyTuple: string
  /** the whole row's 64-bit hash as hex */
  rowHash: string
}

export function tableSql(l: TableLayout): TableSql {
  const col = (c: CheckColumn) =>
    c.hashable ? `t.${quoteIdent(c.name)}` : `(t.${quoteIdent(c.name)}::text COLLATE "C")`
  const keyCols = l.key.map((c) => `t.${quoteIdent(c.name)}`)
  const rowRow = `ROW(${l.columns.map(col).join(', ')})`
  return {
    table: qualified(l.rel),
    keyRow: `ROW(${l.key.map(col).join(', ')})`,
    rowRow,
    keyJson: `(SELECT to_jsonb(k) FROM (SELECT ${keyCols.join(', ')}) k)::text`,
    keyDefs: l.key.map((c) => `${quoteIdent(c.name)} ${c.type}`).join(', '),
    keyMatch: (alias) =>
      l.key.map((c) => `t.${quoteIdent(c.name)} = ${alias}.${quoteIdent(c.name)}`).join(' AND '),
    keyTuple: `(${keyCols.join(', ')})`,
    rowHash: `to_hex(hash_record_extended(${rowRow}, 0))`,
  }
}

/** Run fn in a read transaction whose value texts are the same on every node. */
export async function stableTx<T>(
  db: Db,
  timeoutMs: number,
  fn: (c: Queryable) => Promise<T>,
): Promise<T> {
  return await db.tx(async (c) => {
    await c.query(STABLE_TEXT, [String(Math.max(1, Math.round(timeoutMs)))])
    return await fn(c)
  })
}

export interface BucketHashes {
  /** rows counted (the whole table, or the rows of the parent buckets asked for) */
  rows: number
  buckets: number[]
  counts: number[]
  /** XOR of the rows' 64-bit hashes, hex */
  hashes: string[]
}

export interface BucketQuery {
  /** bucket = key hash & (2^bits - 1) */
  bits: number
  /** only rows whose key hash & (2^parentBits - 1) is one of parents */
  parentBits?: number
  parents?: number[]
  timeoutMs: number
}

const mask = (bits: number) => ((1n << BigInt(bits)) - 1n).toString()

/** Every non-empty bucket's row count and hash: one scan of the table. */
export async function bucketHashes(
  db: Db,
  l: TableLayout,
  q: BucketQuery,
  maxBuckets: number,
): Promise<BucketHashes> {
  const s = tableSql(l)
  const filtered = q.parents !== undefined && q.parentBits !== undefined
  const sql = `
SELECT (kh & $1::int8)::int8 AS b, count(*)::int8 AS n, to_hex(bit_xor(h)) AS x
FROM (SELECT hash_record_extended(${s.keyRow}, 0) AS kh, hash_record_extended(${s.rowRow}, 0) AS h
      FROM ${s.table} t) r
${filtered ? 'WHERE (kh & $2::int8) = ANY($3::int8[])' : ''}
GROUP BY 1 ORDER BY 1 LIMIT ${maxBuckets + 1}`
  const params: unknown[] = [mask(q.bits)]
  if (filtered) params.push(mask(q.parentBits as number), q.parents)
  const rows = await stableTx(
    db,
    q.timeoutMs,
    async (c) => (await c.query<{ b: string; n: string; x: string }>(sql, params)).rows,
  )
  if (rows.length > maxBuckets) {
    throw new ConflictError(
      `more than ${maxBuckets} buckets asked of ${l.relation} at once`,
      'ERR_CHECK_TOO_MANY',
    )
  }
  const out: BucketHashes = { rows: 0, buckets: [], counts: [], hashes: [] }
  for (const r of rows) {
    const n = Number(r.n)
    out.rows += n
    out.buckets.push(Number(r.b))
    out.counts.push(n)
    out.hashes.push(r.x)
  }
  return out
}

/** One row as the check compares it: key, hash, and its origin's commit. */
export interface RowVersionRaw {
  /** the primary key as JSON object text */
  k: string
  /** the row's 64-bit hash, hex */
  h: string
  /** origin commit time, microseconds since 1970 (text: exact beyond 2^53) */
  ts: string | null
  /**
   * who wrote it, as this node knows it: 'local' (written here), the name of our subscription
   * it came through, or another replication origin's name
   */
  o: string | null
}

function versionColumns(l: TableLayout, s: TableSql): { select: string; from: string } {
  if (!l.commitTs) {
    return {
      select: `${s.keyJson} AS k, ${s.rowHash} AS h, NULL::text AS ts, NULL::text AS o`,
      from: `${s.table} t`,
    }
  }
  const by = writtenBy('t.xmin')
  return {
    select: `${s.keyJson} AS k, ${s.rowHash} AS h, ${by.select}`,
    from: `${s.table} t ${by.from}`,
  }
}

/**
 * The origin commit time (ts, µs since 1970 as text) and writer (o: 'local', the subscription
 * it came through, or another origin's name) of the transaction `xmin` (an SQL expression).
 */
export function writtenBy(xmin: string): { select: string; from: string } {
  return {
    select: `(extract(epoch FROM c.timestamp) * 1000000)::int8::text AS ts,
       CASE WHEN c.roident = 0 THEN 'local' ELSE COALESCE(sub.subname::text, ro.roname) END AS o`,
    from: `CROSS JOIN LATERAL pg_xact_commit_timestamp_origin(${xmin}) c
     LEFT JOIN pg_replication_origin ro ON ro.roident = c.roident
     LEFT JOIN pg_subscription sub ON ro.roname = 'pg_' || sub.oid::text`,
  }
}

/** The rows of some buckets, each as key + hash + origin commit (a bounded answer). */
export async function rowsInBuckets(
  db: Db,
  l: TableLayout,
  q: { bits: number; buckets: number[]; limit: number; timeoutMs: number },
): Promise<RowVersionRaw[]> {
  const s = tableSql(l)
  const v = versionColumns(l, s)
  const sql = `SELECT ${v.select} FROM ${v.from}
WHERE (hash_record_extended(${s.keyRow}, 0) & $1::int8) = ANY($2::int8[]) LIMIT $3`
  const rows = await stableTx(
    db,
    q.timeoutMs,
    async (c) => (await c.query<RowVersionRaw>(sql, [mask(q.bits), q.buckets, q.limit + 1])).rows,
  )
  if (rows.length > q.limit) {
    throw new ConflictError(
      `more than ${q.limit} rows asked of ${l.relation} at once`,
      'ERR_CHECK_TOO_MANY',
    )
  }
  return rows
}

/** The rows with these keys (JSON object texts); a key with no row is not in the answer. */
export async function rowsByKeys(
  db: Db,
  l: TableLayout,
  keys: string[],
  timeoutMs: number,
): Promise<RowVersionRaw[]> {
  if (keys.length === 0) return []
  const s = tableSql(l)
  const v = versionColumns(l, s)
  const sql = `SELECT ${v.select} FROM ${v.from}
WHERE ${s.keyTuple} IN (SELECT ${l.key.map((c) => `w.${quoteIdent(c.name)}`).join(', ')}
  FROM jsonb_to_recordset($1::jsonb) AS w(${s.keyDefs}))`
  return await stableTx(
    db,
    timeoutMs,
    async (c) => (await c.query<RowVersionRaw>(sql, [`[${keys.join(',')}]`])).rows,
  )
}

export interface RowImage {
  k: string
  /**
   * the whole row as JSON object text (row_to_json: a json column's text kept as it is, where
   * jsonb would normalise it), written back by json_populate_record
   */
  row: string
  h: string
  ts: string | null
}

/**
 * Whole rows for these keys, up to maxBytes of JSON in all (at least one row); the keys left
 * out are asked again. A row alone larger than maxBytes is answered without its image.
 */
export async function rowImages(
  db: Db,
  l: TableLayout,
  keys: string[],
  maxBytes: number,
  timeoutMs: number,
): Promise<{ images: RowImage[]; tooLarge: string[]; more: string[] }> {
  if (keys.length === 0) return { images: [], tooLarge: [], more: [] }
  const s = tableSql(l)
  const sql = `SELECT ${s.keyJson} AS k, ${s.rowHash} AS h,
       ${l.commitTs ? '(extract(epoch FROM pg_xact_commit_timestamp(t.xmin)) * 1000000)::int8::text' : 'NULL::text'} AS ts,
       octet_length(row_to_json(t)::text) AS size,
       CASE WHEN octet_length(row_to_json(t)::text) <= $2 THEN row_to_json(t)::text END AS row
FROM ${s.table} t
WHERE ${s.keyTuple} IN (SELECT ${l.key.map((c) => `w.${quoteIdent(c.name)}`).join(', ')}
  FROM jsonb_to_recordset($1::jsonb) AS w(${s.keyDefs}))`
  const rows = await stableTx(
    db,
    timeoutMs,
    async (c) =>
      (
        await c.query<RowImage & { size: number; row: string | null }>(sql, [
          `[${keys.join(',')}]`,
          maxBytes,
        ])
      ).rows,
  )
  const images: RowImage[] = []
  const tooLarge: string[] = []
  const answered = new Set<string>()
  let bytes = 0
  for (const r of rows) {
    if (r.row === null) {
      tooLarge.push(r.k)
      answered.add(r.k)
      continue
    }
    if (images.length > 0 && bytes + r.size > maxBytes) continue
    bytes += r.size
    images.push({ k: r.k, row: r.row, h: r.h, ts: r.ts })
    answered.add(r.k)
  }
  // keys without a row here are answered by their absence; only rows over budget come back
  const present = new Set(rows.map((r) => r.k))
  const more = keys.filter((k) => present.has(k) && !answered.has(k))
  return { images, tooLarge, more }
}

/** This server's WAL insert position: every commit visible now lies before it. */
export async function insertLsn(db: Db): Promise<string> {
  const [r] = await db.query<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)
  return r?.lsn ?? '0/0'
}

/**
 * Write one WAL record (an empty transaction's commit): each walsender reads past what it sent,
 * and one whose subscriber has received everything sends it a keepalive, which that subscriber
 * answers with its flush position — at once, instead of at its next status interval.
 */
export async function nudgeWalSenders(db: Db): Promise<void> {
  await db.query(`SELECT pg_current_xact_id()`)
}

export interface SlotProgress {
  slot: string
  confirmed: string | null
  reached: boolean
  exists: boolean
}

/**
 * How far the subscribers' slots on this server have confirmed: a slot's confirmed_flush_lsn
 * at or past `lsn` means its subscriber applied (and flushed) every transaction committed here
 * before `lsn`; an idle stream confirms through keepalives, so it gets there without writes.
 */
export async function slotProgress(db: Db, slots: string[], lsn: string): Promise<SlotProgress[]> {
  const rows = await db.query<{ slot: string; confirmed: string | null; reached: boolean | null }>(
    `SELECT slot_name::text AS slot, confirmed_flush_lsn::text AS confirmed,
            confirmed_flush_lsn >= $2::pg_lsn AS reached
     FROM pg_replication_slots WHERE slot_name = ANY($1::text[])`,
    [slots, lsn],
  )
  return slots.map((slot) => {
    const r = rows.find((x) => x.slot === slot)
    return {
      slot,
      confirmed: r?.confirmed ?? null,
      reached: r?.reached === true,
      exists: r !== undefined,
    }
  })
}
