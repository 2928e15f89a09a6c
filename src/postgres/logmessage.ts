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

// Every quote style a translation uses; one left outside the quoted tokens means the line is not
// the apply worker's (an apostrophe inside a word, as in Italian "l'origine", is not one)
const STRAY_QUOTE = /["»«„“”‘’「」]/
const DIGIT = /\p{Nd}/u

/**
 * The apply worker's CONTEXT ("processing remote data for replication origin ..."), in any
 * language and word order. The apply worker's callback is the outermost, so its line is the
 * last one that names a replication origin; the lines before it (a subscriber trigger's SQL
 * statement, a COPY line) may echo table data and are never read. That line must have the
 * shape of every translation in PostgreSQL's catalogs, or it is not taken (undefined): see
 * parseApplyContextLine. undefined when no line names a replication origin.
 */
export function parseApplyContext(context: string): ApplyErrorContext | undefined {
  const lines = context.split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] ?? ''
    const tokens = quotedTokens(line)
    if (tokens.some((t) => ORIGIN.test(t.value))) return parseApplyContextLine(line, tokens)
  }
  return undefined
}

/**
 * One apply context line, taken only in the shape every translation has (checked against
 * PostgreSQL's catalogs in test/unit/logparse.test.ts). Its quoted tokens are, in order, origin,
 * message type, then optionally relation ("%s.%s") and column; or, in Japanese, the same
 * reversed (relation, column, message type, origin). Outside the quotes stand only words, the
 * remote xid and the finish LSN: both after the last token with the LSN ending the line, or
 * (Japanese) both before the first token with the LSN starting it. No other digit and no
 * stray quote. Text that merely contains an apply context (a COPY line, a statement, a value)
 * has something else around it and is refused.
 */
function parseApplyContextLine(
  line: string,
  tokens: readonly QuotedToken[],
): ApplyErrorContext | undefined {
  if (tokens.length < 2 || tokens.length > 4) return undefined
  const first = tokens[0] as QuotedToken
  const last = tokens[tokens.length - 1] as QuotedToken
  const between = tokens.slice(1).map((t, i) => line.slice((tokens[i] as QuotedToken).end, t.start))
  const head = line.slice(0, first.start)
  const tail = line.slice(last.end)
  if ([head, tail, ...between].some((s) => STRAY_QUOTE.test(s))) return undefined
  if (between.some((s) => DIGIT.test(s))) return undefined
  const originFirst = ORIGIN.test(first.value)
  const origin = originFirst ? first : last
  const messageType = tokens[originFirst ? 1 : tokens.length - 2] as QuotedToken
  const relation = tokens.length >= 3 ? tokens[originFirst ? 2 : 0] : undefined
  const oid = ORIGIN.exec(origin.value)?.[1]
  if (oid === undefined || !MESSAGE_TYPE.test(messageType.value)) return undefined
  if (relation !== undefined && !relation.value.includes('.')) return undefined
  // the numbers stand on one side of the tokens only: after them, or before them in Japanese
  const [numbers, words] = originFirst ? [tail, head] : [head, tail]
  if (DIGIT.test(words)) return undefined
  const numbersAt = readNumbers(numbers, originFirst ? 'end' : 'start')
  if (numbersAt === undefined) return undefined

  const result: ApplyErrorContext = { origin: origin.value, subscriptionOid: Number(oid) }
  result.messageType = messageType.value
  if (relation !== undefined) result.relation = relation.value
  if (numbersAt.finishLsn !== undefined) result.finishLsn = numbersAt.finishLsn
  if (numbersAt.remoteXid !== undefined) result.remoteXid = numbersAt.remoteXid
  return result
}

/**
 * The remote xid and finish LSN in the text outside the quotes on the numbers' side: at most
 * one of each, the LSN at the line's `edge` (its end, or its start in Japanese), no other digit.
 */
function readNumbers(
  text: string,
  edge: 'start' | 'end',
): { finishLsn?: string; remoteXid?: number } | undefined {
  const out: { finishLsn?: string; remoteXid?: number } = {}
  let bare = text
  const lsn = LSN.exec(bare)
  if (lsn !== null) {
    const outside =
      edge === 'end' ? bare.slice(lsn.index + lsn[0].length) : bare.slice(0, lsn.index)
    // a translation may end the line with a full stop, never with a word or a number
    if (/[\p{L}\p{N}]/u.test(outside)) return undefined
    out.finishLsn = lsn[0]
    bare = `${bare.slice(0, lsn.index)} ${bare.slice(lsn.index + lsn[0].length)}`
  }
  const xid = INTEGER.exec(bare)
  if (xid !== null) {
    out.remoteXid = Number(xid[0])
    bare = `${bare.slice(0, xid.index)} ${bare.slice(xid.index + xid[0].length)}`
  }
  return DIGIT.test(bare) ? undefined : out
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

/**
 * A failure that goes away when the transaction is tried again: a deadlock with a local
 * transaction (40P01; it disables the subscription too), a serialization failure.
 */
export function isTransient(sqlState: string): boolean {
  return sqlState === '40P01' || sqlState === '40001'
}

/** Class 23, integrity constraint violation: what a replication conflict raises. */
export function isConflict(sqlState: string): boolean {
  return sqlState.startsWith('23')
}
