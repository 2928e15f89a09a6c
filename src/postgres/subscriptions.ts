// Subscriptions to peers: trktr_sub_<self>_<peer>, origin = none (nothing loops),
// copy_data = false (peers start from the same data), disable_on_error = true (the resolver
// decides what to do with a failing remote transaction).

import pg from 'pg'
import { BadRequestError, ConflictError, TraktorError } from '../errors.js'
import { type ConnParams, formatConninfo, getParam, parseConninfo } from '../libpq/conninfo.js'
import { clientConfig, type Db, pgError, prepared } from './db.js'
import { quoteIdent, quoteLiteral } from './ident.js'
import { PUBLICATION } from './schema.js'
import { oneAtATime } from './turns.js'

export {
  disable,
  enable,
  isEnabled,
  REFRESH_TIMEOUT_MS,
  refresh,
  skip,
} from './subscription-switch.js'

export function subscriptionName(self: number, peer: number): string {
  return `trktr_sub_${self}_${peer}`
}

const NAME = /^trktr_sub_(\d+)_(\d+)$/

/** The peer node id of one of our subscriptions, or undefined if the name is not ours. */
export function peerOf(name: string, self: number): number | undefined {
  const m = NAME.exec(name)
  return m && Number(m[1]) === self ? Number(m[2]) : undefined
}

export interface SubscriptionRow {
  name: string
  oid: number
  enabled: boolean
  skipLsn: string
  peer: number
  /** pg_stat_subscription_stats.apply_error_count: the server's own count of apply errors */
  applyErrors: number
  /** pg_stat_subscription_stats.stats_reset: when that count last started again from 0 */
  statsReset: string | null
  /** remote LSN the origin has applied up to (null before the first transaction) */
  originLsn: string | null
  workerPid: number | null
  /** when the server started (the same in every row): a restart logs to a new file */
  serverStart: string
}

const LIST = prepared(
  'subscriptions',
  `
SELECT s.subname AS name, s.oid::int8 AS oid, s.subenabled AS enabled, s.subskiplsn::text AS skip,
       COALESCE(st.apply_error_count, 0)::int8 AS apply_errors, st.stats_reset::text AS stats_reset,
       pg_replication_origin_progress('pg_' || s.oid, false)::text AS origin_lsn,
       (SELECT w.pid FROM pg_stat_subscription w
         WHERE w.subid = s.oid AND w.relid IS NULL LIMIT 1) AS worker_pid,
       pg_postmaster_start_time()::text AS server_start
FROM pg_subscription s
LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.subname LIKE 'trktr\\_sub\\_%'
ORDER BY s.subname`,
)

export async function listSubscriptions(db: Db, self: number): Promise<SubscriptionRow[]> {
  const rows = await db.query<{
    name: string
    oid: string
    enabled: boolean
    skip: string
    apply_errors: string
    stats_reset: string | null
    origin_lsn: string | null
    worker_pid: number | null
    server_start: string
  }>(LIST)
  const out: SubscriptionRow[] = []
  for (const r of rows) {
    const peer = peerOf(r.name, self)
    if (peer === undefined) continue
    out.push({
      name: r.name,
      oid: Number(r.oid),
      enabled: r.enabled,
      skipLsn: r.skip,
      peer,
      applyErrors: Number(r.apply_errors),
      statsReset: r.stats_reset,
      originLsn: r.origin_lsn,
      workerPid: r.worker_pid,
      serverStart: r.server_start,
    })
  }
  return out
}

export interface SubscribeInit {
  self: number
  peer: number
  conninfo: string
  /** used when the conninfo has none: a non-superuser subscription needs a password */
  peerPassword?: string
  /** false: created disabled (a joining node enables it once its copy is in place) */
  enabled?: boolean
}

/**
 * Create the subscription to a peer (idempotent: an existing one gets the new connection
 * string); a peer that cannot be reached is a 409 with PostgreSQL's reason.
 *
 * The slot is created first, on the peer, from a plain session (createSlot), and the
 * subscription then uses it (create_slot = false). CREATE SUBSCRIPTION creating the slot
 * itself would hold a local transaction open while the peer builds the slot's snapshot, which
 * waits for the peer's running transactions — two nodes subscribing to each other at the same
 * moment then wait for each other forever (seen in the mesh tests).
 */
export async function subscribe(
  db: Db,
  init: SubscribeInit,
): Promise<{ created: boolean; slotLsn?: string }> {
  return await oneAtATime(db, subscriptionName(init.self, init.peer), () => subscribeNow(db, init))
}

async function subscribeNow(
  db: Db,
  init: SubscribeInit,
): Promise<{ created: boolean; slotLsn?: string }> {
  const { self, peer } = init
  if (!Number.isInteger(peer) || peer < 0)
    throw new BadRequestError('inbound_node must be a node id')
  if (peer === self) throw new BadRequestError(`inbound_node ${peer} is this node itself`)
  const conninfo = withPeerPassword(init.conninfo, init.peerPassword)
  const name = subscriptionName(self, peer)
  const existing = await db.query(`SELECT 1 FROM pg_subscription WHERE subname = $1`, [name])
  let slotLsn: string | undefined
  try {
    if (existing.length > 0) {
      const [known] = await db.query<{ conninfo: string }>(
        `SELECT conninfo FROM trktr.peers WHERE node_id = $1`,
        [peer],
      )
      if (known?.conninfo === conninfo) return { created: false }
      await db.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(conninfo)}`)
    } else {
      slotLsn = await createSlot(conninfo, name, self)
      await db.query(
        `CREATE SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(conninfo)}
         PUBLICATION ${quoteIdent(PUBLICATION)}
         WITH (origin = none, copy_data = false, disable_on_error = true,
               create_slot = false, slot_name = ${quoteIdent(name)},
               synchronous_commit = 'off',
               enabled = ${init.enabled === false ? 'false' : 'true'})`,
      )
    }
  } catch (err) {
    throw asPeerError(err, peer)
  }
  await db.query(
    `INSERT INTO trktr.peers (node_id, conninfo) VALUES ($1, $2)
     ON CONFLICT (node_id) DO UPDATE SET conninfo = EXCLUDED.conninfo`,
    [peer, conninfo],
  )
  return { created: existing.length === 0, ...(slotLsn === undefined ? {} : { slotLsn }) }
}

/** Validated, in key/value form, with our peerPassword when the caller gave none. */
export function withPeerPassword(conninfo: string, password: string | undefined): string {
  let params: ConnParams
  try {
    params = parseConninfo(conninfo)
  } catch (err) {
    throw new BadRequestError(`connection_string: ${(err as Error).message}`, 'ERR_CONNINFO')
  }
  if (password !== undefined && getParam(params, 'password') === undefined) {
    params.set('password', password)
  }
  return formatConninfo(params)
}

const SLOT_TIMEOUT_MS = 30_000

/**
 * Create the logical slot for our subscription on the peer. An inactive slot of that name is
 * left from an earlier subscription and would replay old changes: it is dropped first.
 */
async function createSlot(conninfo: string, slot: string, self: number): Promise<string> {
  const client = new pg.Client({
    ...clientConfig(conninfo, `traktor-${self}-slot`),
    statement_timeout: SLOT_TIMEOUT_MS,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    const { rows } = await client.query<{ active: boolean; lsn: string | null }>(
      `SELECT active, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    )
    if (rows[0]?.active)
      throw new ConflictError(`slot ${slot} on the peer is in use`, 'ERR_SLOT_IN_USE')
    // a peer that joined with the cluster's data made this slot for us before it let its local
    // writers go (join-slots.ts): it holds every write there since, so it is kept
    if (rows[0] && (await madeByJoin(client, slot))) return rows[0].lsn ?? '0/0'
    if (rows[0]) await client.query(`SELECT pg_drop_replication_slot($1)`, [slot])
    const created = await client.query<{ lsn: string }>(
      `SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [slot],
    )
    return created.rows[0]?.lsn ?? '0/0'
  } catch (err) {
    throw pgError(err, 'create the replication slot on the peer')
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Is this slot listed as made by the peer's join for us? The listing is used up. */
async function madeByJoin(client: pg.Client, slot: string): Promise<boolean> {
  try {
    const r = await client.query(
      `DELETE FROM trktr.join_slots WHERE slot_name = $1 RETURNING slot_name`,
      [slot],
    )
    return (r.rowCount ?? 0) > 0
  } catch {
    // a peer without the listing (older, or the role may not read it): not made by a join
    return false
  }
}

function asPeerError(err: unknown, peer: number): TraktorError {
  const e = err as TraktorError
  const unreachable = e.code === 'ERR_POSTGRES_CONNECTION' || e.sqlState?.startsWith('08')
  if (unreachable || e.sqlState === '28P01' || e.sqlState === '28000') {
    return new ConflictError(
      `cannot reach node ${peer}: ${e.message}`,
      'ERR_PEER_UNREACHABLE',
      e.sqlState,
    )
  }
  if (e.sqlState === '42501') {
    return new ConflictError(e.message, 'ERR_PERMISSION', e.sqlState)
  }
  return e instanceof TraktorError ? e : new TraktorError('ERR_POSTGRES', String(err))
}

/**
 * Drop the subscription to a peer. If the peer cannot be reached, the slot there cannot be
 * dropped: detach it (slot_name = NONE) so the local subscription still goes, and say so.
 */
export async function unsubscribe(
  db: Db,
  self: number,
  peer: number,
): Promise<{ existed: boolean; slotLeft: boolean }> {
  const name = subscriptionName(self, peer)
  return await oneAtATime(db, name, () => unsubscribeNow(db, name, peer))
}

async function unsubscribeNow(
  db: Db,
  name: string,
  peer: number,
): Promise<{ existed: boolean; slotLeft: boolean }> {
  const existing = await db.query(`SELECT 1 FROM pg_subscription WHERE subname = $1`, [name])
  let slotLeft = false
  if (existing.length > 0) {
    const q = quoteIdent(name)
    try {
      await db.query(`DROP SUBSCRIPTION ${q}`)
    } catch (err) {
      const e = err as TraktorError
      if (!e.sqlState?.startsWith('08')) throw err
      await db.query(`ALTER SUBSCRIPTION ${q} DISABLE`)
      await db.query(`ALTER SUBSCRIPTION ${q} SET (slot_name = NONE)`)
      await db.query(`DROP SUBSCRIPTION ${q}`)
      slotLeft = true
    }
  }
  await db.query(`DELETE FROM trktr.peers WHERE node_id = $1`, [peer]).catch(() => undefined)
  return { existed: existing.length > 0, slotLeft }
}

export interface PeerRow {
  nodeId: number
  conninfo: string
}

export async function listPeers(db: Db): Promise<PeerRow[]> {
  const rows = await db.query<{ node_id: number; conninfo: string }>(
    `SELECT node_id, conninfo FROM trktr.peers ORDER BY node_id`,
  )
  return rows.map((r) => ({ nodeId: r.node_id, conninfo: r.conninfo }))
}

/**
 * Drop the slot a removed node's subscription used on this publisher (its DROP SUBSCRIPTION
 * could not, if it was down). An active slot's walsender is ended first.
 */
export async function dropSlotOf(db: Db, subscriber: number, self: number): Promise<boolean> {
  const slot = subscriptionName(subscriber, self)
  return await oneAtATime(db, `slot ${slot}`, () => dropSlotNow(db, slot))
}

async function dropSlotNow(db: Db, slot: string): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const [s] = await db.query<{ active_pid: number | null }>(
      `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    )
    if (!s) return false
    if (s.active_pid !== null) {
      await db.query(`SELECT pg_terminate_backend($1)`, [s.active_pid])
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)))
      continue
    }
    try {
      await db.query(`SELECT pg_drop_replication_slot($1)`, [slot])
      return true
    } catch (err) {
      const state = (err as { sqlState?: string }).sqlState
      // dropped meanwhile outside this process's turns (the removed node's own DROP
      // SUBSCRIPTION, if it came back for a moment): gone is what was asked
      if (state === '42704') return false
      if (state !== '55006') throw err
    }
  }
  throw new Error(`replication slot ${slot} stays active`)
}
