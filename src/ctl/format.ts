// Small pure helpers for turning the server's JSON into table cells. The server's answers are
// read defensively: a missing or oddly typed field shows as "-" instead of crashing the CLI.
import { getParam, parseConninfo } from '../libpq/conninfo.js'

export type Json = Record<string, unknown>

export const NONE = '-'

export function obj(v: unknown): Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {}
}

export function list(v: unknown): Json[] {
  return Array.isArray(v) ? v.map(obj) : []
}

/**
 * An answer as ctl reads it: the field names of the server's shape (src/api/present.ts), so a
 * renamed field breaks the build here; every value still unchecked (an older or newer
 * arbiter may answer).
 */
export type Reading<T> = { [K in keyof T as string extends K ? never : K]?: unknown }

export function read<T>(v: unknown): Reading<T> {
  return obj(v) as Reading<T>
}

export function readList<T>(v: unknown): Array<Reading<T>> {
  return list(v) as Array<Reading<T>>
}

export function text(v: unknown): string {
  if (typeof v === 'string') return v === '' ? NONE : v
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  if (typeof v === 'boolean') return v ? 'yes' : 'no'
  return NONE
}

export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

export function yesNo(v: unknown): string {
  return typeof v === 'boolean' ? (v ? 'yes' : 'no') : NONE
}

/** 120 → "0.1 s ago", 42_000 → "42 s ago", 600_000 → "10 min ago" */
export function ago(ms: unknown): string {
  const n = num(ms)
  if (n === undefined || n < 0) return NONE
  return `${duration(n)} ago`
}

export function duration(ms: number): string {
  if (ms < 10_000) return `${(Math.round(ms / 100) / 10).toFixed(1)} s`
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`
  if (ms < 172_800_000) return `${Math.round(ms / 3_600_000)} h`
  return `${Math.round(ms / 86_400_000)} d`
}

/** ISO timestamp → "2025-06-01 12:00:03" (UTC); anything else as it is. */
export function utc(v: unknown): string {
  if (typeof v !== 'string' || v === '') return NONE
  const d = new Date(v)
  if (Number.isNaN(d.getTime())) return v
  return d.toISOString().slice(0, 19).replace('T', ' ')
}

/** A libpq connection string as host:port/dbname; unparsable ones as they are. */
export function shortConninfo(v: unknown): string {
  if (typeof v !== 'string' || v === '') return NONE
  try {
    const p = parseConninfo(v)
    const host = getParam(p, 'host') ?? getParam(p, 'hostaddr') ?? 'localhost'
    const port = getParam(p, 'port') ?? '5432'
    const db = getParam(p, 'dbname')
    const hostport = host.startsWith('/') ? `${host} ${port}` : `${bracket(host)}:${port}`
    return db ? `${hostport}/${db}` : hostport
  } catch {
    return v
  }
}

function bracket(host: string): string {
  return host.includes(':') && !host.includes(',') ? `[${host}]` : host
}

/** "node 2: why" (how members word their refusals) → "why", for lines that name the node. */
export function withoutNode(node: unknown, reason: string): string {
  const prefix = `node ${text(node)}: `
  return reason.startsWith(prefix) ? reason.slice(prefix.length) : reason
}
