// The cluster's commit mode (sync mode, commit-mode.ts) as this node stored it, in
// trktr.cluster: set by a call on any node, the newest setting wins.
import type { Db } from './db.js'

/** The cluster's commit mode as this node last stored it (undefined: never set by a call). */
export interface CommitSetting {
  mode: 'async' | 'sync'
  /** sync: how many peers a commit waits for (undefined: every live peer) */
  quorum?: number
  /** when it was set (ms since the epoch): members compare it, the newest wins */
  changed: number
}

export async function commitSetting(db: Db): Promise<CommitSetting | undefined> {
  const [r] = await db.query<{
    mode: 'async' | 'sync' | null
    quorum: number | null
    changed: string | null
  }>(
    `SELECT commit_mode AS mode, commit_quorum AS quorum, commit_changed::text AS changed FROM trktr.cluster`,
  )
  if (!r?.mode || r.changed === null) return undefined
  return {
    mode: r.mode,
    ...(r.quorum === null ? {} : { quorum: r.quorum }),
    changed: Number(r.changed),
  }
}

/** Store a newer setting; an older or equal one changes nothing (returns whether it was stored). */
export async function storeCommitSetting(db: Db, s: CommitSetting): Promise<boolean> {
  const rows = await db.query(
    `UPDATE trktr.cluster SET commit_mode = $1, commit_quorum = $2, commit_changed = $3
      WHERE commit_changed IS NULL OR commit_changed < $3 RETURNING 1`,
    [s.mode, s.quorum ?? null, s.changed],
  )
  return rows.length > 0
}
