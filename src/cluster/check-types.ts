// The shapes of a consistency check and a repair: what the API answers, what every member
// keeps of the last check, and what one check of a table observed.
import type { KeyReport, Picture, Verdict } from './check.js'
import type { Decision } from './check-deletes.js'

export interface TableReport {
  relation: string
  verdict: Verdict
  nodes: Array<{ node: number; rows: number }>
  differing_rows: number
  keys: KeyReport[]
  keys_truncated: boolean
  unsettled_rows: number
  /** so many buckets differed that only part of them were narrowed: more keys may differ */
  partial: boolean
  rounds: number
  duration_ms: number
  checked_at: string
  coordinator: number
  check_id: string
  notes: string[]
}

export interface CheckAnswer {
  node: number
  verdict: Verdict
  differing_rows: number
  duration_ms: number
  checked_at: string
  tables: TableReport[]
}

export interface RepairAnswer {
  node: number
  relation: string
  rule: string
  from?: number
  repaired_rows: number
  writes: number
  changed: unknown[]
  failed: Array<{ key: unknown; node: number; error: string }>
  passes: number
  duration_ms: number
  before: TableReport
  after: TableReport
}

/** What the last check of a table found, as every member keeps it. */
export interface CheckRecord {
  relation: string
  verdict: Verdict
  differing: number
  unsettled: number
  atMs: number
  durationMs: number
  coordinator: number
}

export interface Observed {
  report: TableReport
  confirmed: Map<string, Picture>
  nodes: number[]
  commitTs: boolean
  /** keys some nodes lack, decided by the tombstones (check-deletes.ts) */
  decided?: Map<string, Decision>
}

export interface Options {
  pace?: boolean
  from?: number
  /** only the keys every node holds a row for, and those the tombstones decide (the mend) */
  held?: boolean
}
