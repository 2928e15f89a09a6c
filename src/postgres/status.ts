// Node status as TRAKTOR reports it, measured on this server only.
import type { Db } from './db.js'
import { historyCounts } from './history.js'
import type { SubscriptionRow } from './subscriptions.js'

export interface ServerFacts {
  version: string
  versionNum: number
}

export async function serverFacts(db: Db): Promise<ServerFacts> {
  const [r] = await db.query<{ v: string; n: string }>(
    `SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n`,
  )
  return { version: (r?.v ?? '').split(' ')[0] ?? '', versionNum: Number(r?.n ?? 0) }
}

/**
 * Apply lag of the peers that subscribe to this node, in ms: how long ago the oldest WAL a
 * subscriber has not yet applied was written here. Both ends of the interval are read on this
 * server's clock (pg_stat_replication's replay_lag), so clock skew between nodes plays no
 * part. A subscriber that has applied everything counts 0.
 */
const LAG = `
SELECT COALESCE(max(CASE WHEN r.replay_lsn >= pg_current_wal_lsn() THEN 0
                         ELSE extract(epoch FROM r.replay_lag) * 1000 END), 0)::float8 AS lag_ms
FROM pg_stat_replication r
WHERE r.application_name LIKE 'trktr\\_sub\\_%'`

export async function replicationLagMs(db: Db): Promise<number> {
  const [r] = await db.query<{ lag_ms: number }>(LAG)
  return Math.round((r?.lag_ms ?? 0) * 1000) / 1000
}

/** Per peer subscribed to this node: WAL bytes not applied yet and replay lag in seconds. */
const LAG_BY_SUBSCRIBER = `
SELECT r.application_name AS subscription,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn), 0)::float8 AS bytes,
       CASE WHEN r.replay_lsn >= pg_current_wal_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM r.replay_lag), 0) END::float8 AS seconds
FROM pg_stat_replication r
WHERE r.application_name LIKE 'trktr\\_sub\\_%'
ORDER BY 1`

export async function lagBySubscriber(
  db: Db,
): Promise<Array<{ subscription: string; bytes: number; seconds: number }>> {
  return await db.query(LAG_BY_SUBSCRIBER)
}

export interface NodeStatus {
  node: number
  is_replicating: boolean
  is_tainted: boolean
  conflicts_resolved: number
  conflicts_pending: number
  replication_lag_ms: number
  server_version: number
  server_version_num: number
}

/** The node as TRAKTOR reports it; `subscriptions` undefined: the node is not initialised. */
export async function nodeStatus(
  db: Db,
  nodeId: number,
  subscriptions: readonly SubscriptionRow[] | undefined,
): Promise<NodeStatus> {
  const facts = await serverFacts(db)
  const counts = subscriptions
    ? await historyCounts(db)
    : { resolved: 0, pending: 0, tainted: false }
  return {
    node: nodeId,
    is_replicating: (subscriptions ?? []).every((s) => s.enabled),
    is_tainted: counts.tainted,
    conflicts_resolved: counts.resolved,
    conflicts_pending: counts.pending,
    replication_lag_ms: await replicationLagMs(db),
    server_version: Number(facts.version.match(/^\d+(\.\d+)?/)?.[0] ?? 0),
    server_version_num: facts.versionNum,
  }
}
