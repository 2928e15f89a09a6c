// Table names from callers ("schema.table"), parsed the way PostgreSQL reads a qualified name:
// unquoted parts fold to lower case, "quoted" parts keep their case and may hold anything but
// NUL. Whatever does not parse is refused before it gets near SQL.
import { BadRequestError } from '../errors.js'

export interface RelationName {
  readonly schema: string
  readonly table: string
}

const MAX_IDENT_BYTES = 63
const UNQUOTED = /^[A-Za-z_][A-Za-z0-9_$]*/

/** Parse "schema.table" (both parts required); throws BadRequestError with the reason. */
export function parseRelationName(input: string): RelationName {
  const parts: string[] = []
  let rest = input
  while (parts.length < 3) {
    const [part, after] = readPart(rest, input)
    parts.push(part)
    if (after === '') break
    if (after[0] !== '.') throw bad(input, `unexpected "${after[0]}"`)
    rest = after.slice(1)
  }
  if (parts.length !== 2) throw bad(input, 'expected exactly schema.table')
  const [schema, table] = parts as [string, string]
  return { schema, table }
}

function readPart(s: string, input: string): [string, string] {
  if (s.startsWith('"')) {
    let out = ''
    let i = 1
    for (;;) {
      const q = s.indexOf('"', i)
      if (q < 0) throw bad(input, 'unterminated quoted identifier')
      out += s.slice(i, q)
      if (s[q + 1] === '"') {
        out += '"'
        i = q + 2
        continue
      }
      return [checked(out, input), s.slice(q + 1)]
    }
  }
  const m = UNQUOTED.exec(s)
  if (!m) throw bad(input, s === '' ? 'empty name' : `unexpected "${s[0]}"`)
  return [checked(m[0].toLowerCase(), input), s.slice(m[0].length)]
}

function checked(ident: string, input: string): string {
  if (ident === '') throw bad(input, 'empty identifier')
  if (ident.includes('\0')) throw bad(input, 'NUL in identifier')
  if (Buffer.byteLength(ident) > MAX_IDENT_BYTES) {
    throw bad(input, `identifier longer than ${MAX_IDENT_BYTES} bytes`)
  }
  return ident
}

function bad(input: string, why: string): BadRequestError {
  const shown = input.length > 80 ? `${input.slice(0, 80)}...` : input
  return new BadRequestError(
    `malformed table name ${JSON.stringify(shown)}: ${why}`,
    'ERR_TABLE_NAME',
  )
}

/** Quote an identifier for SQL text (double quotes, doubled inside). */
export function quoteIdent(ident: string): string {
  return `"${ident.replace(/"/g, '""')}"`
}

/** Quote a string literal for SQL text where parameters are not allowed (utility commands). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new BadRequestError('NUL character in a value')
  const hasBackslash = value.includes('\\')
  const body = value.replace(/'/g, "''").replace(/\\/g, '\\\\')
  return hasBackslash ? ` E'${body}'` : `'${body}'`
}

/** The display form used in API answers: schema.table, quoting only where needed. */
export function formatRelation(rel: RelationName): string {
  return `${displayIdent(rel.schema)}.${displayIdent(rel.table)}`
}

function displayIdent(ident: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(ident) ? ident : quoteIdent(ident)
}

/** qualified, quoted: for SQL text */
export function qualified(rel: RelationName): string {
  return `${quoteIdent(rel.schema)}.${quoteIdent(rel.table)}`
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i

/** An LSN as printed by PostgreSQL ("0/18FD018"); throws if it is anything else. */
export function checkLsn(lsn: string): string {
  if (!LSN.test(lsn)) throw new BadRequestError(`not an LSN: ${JSON.stringify(lsn)}`)
  return lsn.toUpperCase()
}
