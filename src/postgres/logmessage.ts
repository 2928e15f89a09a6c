// The parts of a log record's text that name things, read by structure, never by English
// words (see logparse.ts for the record layer): quoted names in any language's quote style,
// the apply worker's CONTEXT (origin, message type, relation, remote xid, finish LSN), a
// key DETAIL (cols)=(values), and the SQLSTATE classes the resolver branches on.

interface QuotedToken {
  value: string
  start: number
  end: number
}

// "x", »x«, «x» (French adds spaces: « x »), „x“, “x”, ‘x’, 「x」 and 'x' where the quotes are not
// apostrophes inside a word (n'existe).
const QUOTED = new RegExp(
  [
    '"([^"]*)"',
    '»([^«»]*)«',
    '«([^«»]*)»',
    '„([^„“”]*)[“”]',
    '“([^“”]*)”',
    '‘([^‘’]*)’',
    '「([^「」]*)」',
    "(?<![\\p{L}\\p{N}])'([^']*)'(?![\\p{L}\\p{N}])",
  ].join('|'),
  'gu',
)

function quotedTokens(text: string): QuotedToken[] {
  const tokens: QuotedToken[] = []
  for (const m of text.matchAll(QUOTED)) {
    const inner = m.slice(1).find((g) => g !== undefined) ?? ''
    const guillemets = m[0].startsWith('«') || m[0].startsWith('»')
    tokens.push({
      value: guillemets ? inner.trim() : inner,
      start: m.index,
      end: m.index + m[0].length,
    })
  }
  return tokens
}

/** Every quoted token in a message, in order, whatever the language's quote style. */
export function findQuotedNames(message: string): string[] {
  return quotedTokens(message).map((t) => t.value)
}

export interface ApplyErrorContext {
  /** replication origin as printed, "pg_16395" (apply) or "pg_16395_16384" (tablesync, PG16+) */
  origin: string
  subscriptionOid: number
  messageType?: string
  /** "public.t" as printed */
  relation?: string
  /** the transaction id on the publisher */
  remoteXid?: number
  /** the remote commit LSN, "0/18FD018": what ALTER SUBSCRIPTION ... SKIP takes */
  finishLsn?: string
}

const ORIGIN = /^pg_(\d+)(?:_\d+)?$/
// logicalrep_message_type() names are never translated; unknown ones print as "??? (n)"
const MESSAGE_TYPE = /^(?:[A-Z]+(?: [A-Z]+)*|\?\?\? \(\d+\))$/
const LSN = /(?<![0-9A-Za-z_])[0-9A-F]{1,8}\/[0-9A-F]{1,8}(?![0-9A-Za-z_])/
const INTEGER = /(?<![0-9A-Za-z_])\d+(?![0-9A-Za-z_])/

/**
 * The apply worker's CONTEXT ("processing remote data for replication origin ..."), in any
 * language and word order. With nested contexts (a trigger on the subscriber) the apply line
 * is the last one. undefined when no line names a replication origin.
 */
export function parseApplyContext(context: string): ApplyErrorContext | undefined {
  const lines = context.split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    const parsed = parseApplyContextLine(lines[i] ?? '')
    if (parsed !== undefined) return parsed
  }
  return undefined
}

function parseApplyContextLine(line: string): ApplyErrorContext | undefined {
  const tokens = quotedTokens(line)
  const origin = tokens.find((t) => ORIGIN.test(t.value))
  const oid = origin === undefined ? undefined : ORIGIN.exec(origin.value)?.[1]
  if (origin === undefined || oid === undefined) return undefined
  const result: ApplyErrorContext = { origin: origin.value, subscriptionOid: Number(oid) }
  const rest = tokens.filter((t) => t !== origin)
  const messageType = rest.find((t) => MESSAGE_TYPE.test(t.value))
  if (messageType !== undefined) result.messageType = messageType.value
  // printed as "%s.%s", so the relation is the token with a dot (a column token follows it)
  const relation = rest.find((t) => t !== messageType && t.value.includes('.'))
  if (relation !== undefined) result.relation = relation.value

  // the numbers stand outside the quotes: first the LSN, then the only integer left
  let bare = ''
  let pos = 0
  for (const t of tokens) {
    bare += `${line.slice(pos, t.start)} `
    pos = t.end
  }
  bare += line.slice(pos)
  const lsn = LSN.exec(bare)
  if (lsn !== null) {
    result.finishLsn = lsn[0]
    bare = `${bare.slice(0, lsn.index)} ${bare.slice(lsn.index + lsn[0].length)}`
  }
  const xid = INTEGER.exec(bare)
  if (xid !== null) result.remoteXid = Number(xid[0])
  return result
}

/**
 * The key of a unique violation's DETAIL, "Key (id)=(5) already exists." → {key: 'id',
 * value: '5'}, in any language ("Schlüssel »(a, b)=(1, x)« existiert bereits."). Key and value
 * are returned as printed; an expression key like lower(email) keeps its parentheses.
 */
export function parseKeyDetail(detail: string): { key: string; value: string } | undefined {
  const sep = detail.indexOf(')=(')
  if (sep < 0) return undefined
  const open = matchingOpen(detail, sep)
  if (open < 0) return undefined
  const valueStart = sep + 3
  // values are printed raw, so the value ends at the last ")" - before a second key if there
  // is one (exclusion constraints: "Key (c)=(1) conflicts with existing key (c)=(2).")
  let limit = detail.length
  const second = detail.indexOf(')=(', valueStart)
  if (second >= 0) {
    const secondOpen = matchingOpen(detail, second)
    if (secondOpen > valueStart) limit = secondOpen
  }
  const close = detail.lastIndexOf(')', limit - 1)
  if (close < valueStart) return undefined
  return { key: detail.slice(open + 1, sep), value: detail.slice(valueStart, close) }
}

function matchingOpen(text: string, close: number): number {
  let depth = 0
  for (let i = close; i >= 0; i--) {
    const c = text[i]
    if (c === ')') depth++
    else if (c === '(' && --depth === 0) return i
  }
  return -1
}

const CONNECTION_LOSS_57 = new Set(['57P01', '57P02', '57P03', '57P04', '57P05'])

/**
 * Class 08 (connection exception) and the 57P0x operator interventions that end a connection:
 * admin/crash shutdown, cannot connect now, database dropped, idle session timeout.
 */
export function isConnectionLoss(sqlState: string): boolean {
  return sqlState.startsWith('08') || CONNECTION_LOSS_57.has(sqlState)
}

/** Class 23, integrity constraint violation: what a replication conflict raises. */
export function isConflict(sqlState: string): boolean {
  return sqlState.startsWith('23')
}
