// Parses PostgreSQL's csvlog and jsonlog incrementally, and the apply worker's CONTEXT and
// DETAIL lines, by structure only: lc_messages may be German (or Russian, Japanese, ...), so no
// English word is ever matched. What is stable across languages is the column layout, the
// jsonlog keys, the SQLSTATE, the quoted tokens, the origin name pg_<subid>, the message-type
// names (INSERT, BEGIN, ...), the X/X form of an LSN and the (cols)=(values) form of a key.
//
// Found on real servers (test/fixtures/logs): csvlog prints error_severity translated
// (German: FEHLER, HINWEIS, WARNUNG, PANIK), jsonlog prints it in English; jsonlog leaves out
// state_code when it is 00000. Translations quote with "x", »x«, « x », „x“ or 'x'.

export type LogFormat = 'jsonlog' | 'csvlog'

export type LogLevel = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'LOG' | 'ERROR' | 'FATAL' | 'PANIC'

export interface LogRecord {
  timestamp: string
  pid: number
  /** error_severity as printed: English in jsonlog, translated in csvlog (e.g. FEHLER) */
  severity: string
  /** severity normalised to PostgreSQL's English level name (see normalizeSeverity) */
  level: LogLevel
  /** 00000 when the log left it out */
  sqlState: string
  message: string
  detail?: string
  hint?: string
  context?: string
  /** the client statement that failed (csvlog "query", jsonlog "statement") */
  statement?: string
  backendType?: string
}

export interface LogParserInit {
  /** a record longer than this is dropped and the parser resyncs at the next newline */
  maxRecordChars?: number
}

export const SQLSTATE_SUCCESS = '00000'
const DEFAULT_MAX_RECORD_CHARS = 16 * 1024 * 1024
const NEWLINE = 0x0a
const QUOTE = 0x22

// csvlog columns, 0-based, per the "Using CSV-Format Log Output" docs; 26 columns in PG 14-17,
// 24 in PG 13 and 23 before (backend_type is then missing).
const CSV_COLUMN = {
  timestamp: 0,
  pid: 3,
  severity: 11,
  sqlState: 12,
  message: 13,
  detail: 14,
  hint: 15,
  context: 18,
  statement: 19,
  backendType: 23,
} as const
const CSV_MIN_COLUMNS = 23

const LEVELS: ReadonlySet<string> = new Set<LogLevel>([
  'DEBUG',
  'INFO',
  'NOTICE',
  'WARNING',
  'LOG',
  'ERROR',
  'FATAL',
  'PANIC',
])

// Every translated severity in PostgreSQL 15's message catalogs (de, fr, it, ka, ko, ru, sv,
// uk, zh_CN; es and ja keep English). Georgian uses one word for NOTICE and WARNING, so that
// word is left out and falls back to the SQLSTATE.
const TRANSLATED_LEVELS: ReadonlyMap<string, LogLevel> = new Map<string, LogLevel>([
  ['HINWEIS', 'NOTICE'],
  ['WARNUNG', 'WARNING'],
  ['FEHLER', 'ERROR'],
  ['PANIK', 'PANIC'],
  ['ATTENTION', 'WARNING'],
  ['ERREUR', 'ERROR'],
  ['NOTIFICA', 'NOTICE'],
  ['ATTENZIONE', 'WARNING'],
  ['ERRORE', 'ERROR'],
  ['FATALE', 'FATAL'],
  ['PANICO', 'PANIC'],
  ['გამართვა', 'DEBUG'],
  ['ჟურნალი', 'LOG'],
  ['ინფორმაცია', 'INFO'],
  ['შეცდომა', 'ERROR'],
  ['ფატალური', 'FATAL'],
  ['პანიკა', 'PANIC'],
  ['디버그', 'DEBUG'],
  ['로그', 'LOG'],
  ['정보', 'INFO'],
  ['알림', 'NOTICE'],
  ['경고', 'WARNING'],
  ['오류', 'ERROR'],
  ['치명적오류', 'FATAL'],
  ['손상', 'PANIC'],
  ['ОТЛАДКА', 'DEBUG'],
  ['СООБЩЕНИЕ', 'LOG'],
  ['ИНФОРМАЦИЯ', 'INFO'],
  ['ЗАМЕЧАНИЕ', 'NOTICE'],
  ['ПРЕДУПРЕЖДЕНИЕ', 'WARNING'],
  ['ОШИБКА', 'ERROR'],
  ['ВАЖНО', 'FATAL'],
  ['ПАНИКА', 'PANIC'],
  ['LOGG', 'LOG'],
  ['NOTIS', 'NOTICE'],
  ['VARNING', 'WARNING'],
  ['FEL', 'ERROR'],
  ['FATALT', 'FATAL'],
  ['НАЛАГОДЖЕННЯ', 'DEBUG'],
  ['ЗАПИСУВАННЯ', 'LOG'],
  ['ІНФОРМАЦІЯ', 'INFO'],
  ['ПОВІДОМЛЕННЯ', 'NOTICE'],
  ['ПОПЕРЕДЖЕННЯ', 'WARNING'],
  ['ПОМИЛКА', 'ERROR'],
  ['ФАТАЛЬНО', 'FATAL'],
  ['ПАНІКА', 'PANIC'],
  ['调试', 'DEBUG'],
  ['日志', 'LOG'],
  ['信息', 'INFO'],
  ['注意', 'NOTICE'],
  ['警告', 'WARNING'],
  ['错误', 'ERROR'],
  ['致命错误', 'FATAL'],
  ['比致命错误还过分的错误', 'PANIC'],
])

/**
 * The English level of a printed severity. A severity in no known language is judged by its
 * SQLSTATE class: 00 → LOG, 01/02 (warning classes) → WARNING, anything else → ERROR.
 */
export function normalizeSeverity(severity: string, sqlState: string): LogLevel {
  const s = severity.trim()
  if (LEVELS.has(s)) return s as LogLevel
  const translated = TRANSLATED_LEVELS.get(s)
  if (translated !== undefined) return translated
  const cls = sqlState.slice(0, 2)
  if (cls === '00') return 'LOG'
  if (cls === '01' || cls === '02') return 'WARNING'
  return 'ERROR'
}

/** Incremental csvlog/jsonlog reader: feed it bytes as they come, get complete records. */
export class LogParser {
  readonly format: LogFormat
  private readonly maxRecordChars: number
  private decoder = new TextDecoder('utf-8')
  private pending = ''
  private quoted = false
  private discarding = false
  private skippedCount = 0

  constructor(format: LogFormat, init: LogParserInit = {}) {
    this.format = format
    this.maxRecordChars = init.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS
  }

  /** Records (or lines) that were not a valid log record and were dropped. */
  get skipped(): number {
    return this.skippedCount
  }

  /** Complete records in this chunk plus what earlier chunks left unfinished. */
  feed(chunk: Uint8Array): LogRecord[] {
    const text = this.pending + this.decoder.decode(chunk, { stream: true })
    const from = this.pending.length
    const csv = this.format === 'csvlog'
    const out: LogRecord[] = []
    let start = 0
    for (let i = from; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c === QUOTE && csv && !this.discarding) this.quoted = !this.quoted
      else if (c === NEWLINE && !this.quoted) {
        if (this.discarding) this.discarding = false
        else this.take(text.slice(start, i), out)
        start = i + 1
      }
    }
    this.pending = text.slice(start)
    if (this.pending.length > this.maxRecordChars) {
      // an unterminated quote or a runaway line: drop it and start again at the next newline
      this.pending = ''
      this.quoted = false
      if (!this.discarding) this.skippedCount++
      this.discarding = true
    }
    return out
  }

  /** Forgets any unfinished record, e.g. when the log file was rotated. */
  reset(): void {
    this.decoder = new TextDecoder('utf-8')
    this.pending = ''
    this.quoted = false
    this.discarding = false
  }

  private take(raw: string, out: LogRecord[]): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (line.trim() === '') return
    const record = this.format === 'csvlog' ? fromCsv(line) : fromJson(line)
    if (record === undefined) this.skippedCount++
    else out.push(record)
  }
}

function fromJson(line: string): LogRecord | undefined {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const o = value as Record<string, unknown>
  const text = (key: string): string | undefined => {
    const v = o[key]
    return typeof v === 'string' && v !== '' ? v : undefined
  }
  const sqlState = text('state_code') ?? SQLSTATE_SUCCESS
  const timestamp = text('timestamp')
  const severity = text('error_severity')
  if (timestamp === undefined || severity === undefined || !SQLSTATE.test(sqlState))
    return undefined
  if (typeof o.pid !== 'number' || !Number.isInteger(o.pid)) return undefined
  return build(timestamp, o.pid, severity, sqlState, {
    message: text('message'),
    detail: text('detail'),
    hint: text('hint'),
    context: text('context'),
    statement: text('statement'),
    backendType: text('backend_type'),
  })
}

const SQLSTATE = /^[0-9A-Z]{5}$/
const CSV_TIMESTAMP = /^\d{4}-\d\d-\d\d /
const PID = /^\d+$/

function fromCsv(line: string): LogRecord | undefined {
  const f = splitCsv(line)
  if (f === undefined || f.length < CSV_MIN_COLUMNS) return undefined
  const timestamp = f[CSV_COLUMN.timestamp]
  const pid = f[CSV_COLUMN.pid]
  const severity = f[CSV_COLUMN.severity]
  const sqlState = f[CSV_COLUMN.sqlState] ?? SQLSTATE_SUCCESS
  if (timestamp === undefined || !CSV_TIMESTAMP.test(timestamp)) return undefined
  if (pid === undefined || !PID.test(pid) || severity === undefined) return undefined
  if (!SQLSTATE.test(sqlState)) return undefined
  const text = (i: number): string | undefined => {
    const v = f[i]
    return v === '' ? undefined : v
  }
  return build(timestamp, Number(pid), severity, sqlState, {
    message: text(CSV_COLUMN.message),
    detail: text(CSV_COLUMN.detail),
    hint: text(CSV_COLUMN.hint),
    context: text(CSV_COLUMN.context),
    statement: text(CSV_COLUMN.statement),
    backendType: text(CSV_COLUMN.backendType),
  })
}

type OptionalFields = Partial<Record<'detail' | 'hint' | 'context' | 'statement', string>>

function build(
  timestamp: string,
  pid: number,
  severity: string,
  sqlState: string,
  fields: OptionalFields & { message: string | undefined; backendType: string | undefined },
): LogRecord {
  const record: LogRecord = {
    timestamp,
    pid,
    severity,
    level: normalizeSeverity(severity, sqlState),
    sqlState,
    message: fields.message ?? '',
  }
  for (const key of ['detail', 'hint', 'context', 'statement', 'backendType'] as const) {
    const v = fields[key]
    if (v !== undefined) record[key] = v
  }
  return record
}

/**
 * One csv record into its fields: a quoted field is a string ("" inside means "), an unquoted
 * empty field is undefined (NULL). undefined for a malformed record.
 */
function splitCsv(line: string): (string | undefined)[] | undefined {
  const fields: (string | undefined)[] = []
  let i = 0
  for (;;) {
    if (line.charCodeAt(i) === QUOTE) {
      let value = ''
      i++
      for (;;) {
        const q = line.indexOf('"', i)
        if (q < 0) return undefined
        value += line.slice(i, q)
        if (line.charCodeAt(q + 1) === QUOTE) {
          value += '"'
          i = q + 2
        } else {
          i = q + 1
          break
        }
      }
      fields.push(value)
      if (i === line.length) return fields
      if (line[i] !== ',') return undefined
      i++
    } else {
      const comma = line.indexOf(',', i)
      const end = comma < 0 ? line.length : comma
      const raw = line.slice(i, end)
      if (raw.includes('"')) return undefined
      fields.push(raw === '' ? undefined : raw)
      if (comma < 0) return fields
      i = comma + 1
    }
  }
}

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
