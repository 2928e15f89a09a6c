// Which schema changes the cluster runs (README "Changing the schema"): the statement's leading
// keywords, read past comments, name its kind. Only the kind is read here; PostgreSQL parses the
// statement itself (run as one extended-protocol statement, so a second statement is refused by
// the server, not guessed at here) and the dry run reports what it touched.
import { BadRequestError } from '../errors.js'

export type DdlKind = 'alter-table' | 'create-index' | 'drop-index' | 'create-table' | 'drop-table'

export const ALLOWED_DDL =
  'ALTER TABLE, CREATE [UNIQUE] INDEX, DROP INDEX, CREATE TABLE, DROP TABLE (one statement)'

/** Longest statement accepted (the statement travels in every member's proposal). */
export const MAX_DDL_BYTES = 64 * 1024

/** The kind of a cluster DDL statement, or a BadRequestError that says what is allowed. */
export function ddlKind(sql: string): DdlKind {
  if (typeof sql !== 'string' || sql.trim() === '') throw bad('sql: the statement is empty')
  if (Buffer.byteLength(sql) > MAX_DDL_BYTES) throw bad(`sql: longer than ${MAX_DDL_BYTES} bytes`)
  if (sql.includes('\0')) throw bad('sql: NUL in the statement')
  const words = leadingWords(sql, 4)
  const [a, b, c, d] = words
  if (a === 'ALTER' && b === 'TABLE') return 'alter-table'
  if (a === 'CREATE' && b === 'TABLE') return 'create-table'
  if (a === 'DROP' && b === 'TABLE') return 'drop-table'
  const index = a === 'CREATE' && b === 'UNIQUE' ? c : b
  if ((a === 'CREATE' || a === 'DROP') && index === 'INDEX') {
    const next = a === 'CREATE' && b === 'UNIQUE' ? d : c
    if (next === 'CONCURRENTLY')
      throw bad(
        `sql: ${a} INDEX CONCURRENTLY cannot run inside the transaction a cluster change prepares on every node; use ${a} INDEX (writers of the table wait while it runs)`,
      )
    return a === 'CREATE' ? 'create-index' : 'drop-index'
  }
  if (a === 'CREATE' && b !== undefined && ['TEMP', 'TEMPORARY', 'UNLOGGED'].includes(b))
    throw bad(`sql: a ${b.toLowerCase()} table is not replicated; create it on the node itself`)
  const shown = sql.trim().replace(/\s+/g, ' ').slice(0, 40)
  throw bad(`sql: "${shown}" is not a schema change the cluster runs; allowed: ${ALLOWED_DDL}`)
}

/** The first n keywords (upper case), skipping whitespace and -- and nested /* comments. */
export function leadingWords(sql: string, n: number): string[] {
  const out: string[] = []
  let i = 0
  while (out.length < n && i < sql.length) {
    const ch = sql[i] as string
    if (/\s/.test(ch)) {
      i++
    } else if (sql.startsWith('--', i)) {
      const nl = sql.indexOf('\n', i)
      i = nl < 0 ? sql.length : nl + 1
    } else if (sql.startsWith('/*', i)) {
      let depth = 0
      while (i < sql.length) {
        if (sql.startsWith('/*', i)) {
          depth++
          i += 2
        } else if (sql.startsWith('*/', i)) {
          depth--
          i += 2
          if (depth === 0) break
        } else i++
      }
    } else {
      const m = /^[A-Za-z_]+/.exec(sql.slice(i, i + 64))
      if (!m) break
      out.push(m[0].toUpperCase())
      i += m[0].length
    }
  }
  return out
}

function bad(message: string): BadRequestError {
  return new BadRequestError(message)
}
