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
  /**
   * a record longer than this is dropped; parsing starts again after its end (in csvlog the
   * next newline outside quotes, so a csv file with an unbalanced quote, which PostgreSQL never
   * writes, yields nothing more until the next file)
   */
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

// The backend_type PostgreSQL prints for an apply worker: its own name for the process, never
// translated and not settable by a client (application_name is another column). 17 names it
// "logical replication apply worker"; 15 and 16 print "logical replication worker" for apply
// and tablesync workers alike (a tablesync error counts in sync_error_count, which the
// resolver does not take as an apply error). Tablesync and parallel apply workers of 17 have
// names of their own and are not taken: a parallel worker's error reaches the log again
// through its leader, the apply worker.
const APPLY_WORKER_BACKEND_TYPES: ReadonlySet<string> = new Set([
  'logical replication apply worker',
  'logical replication worker',
])

/**
 * Whether a record was written by a logical replication apply worker. Only such records may
 * speak for a subscription: any backend can make the server log text of its choosing.
 */
export function isApplyWorkerRecord(r: Pick<LogRecord, 'backendType'>): boolean {
  return r.backendType !== undefined && APPLY_WORKER_BACKEND_TYPES.has(r.backendType)
}

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
      // quotes are followed even while a record is being dropped: PostgreSQL doubles every
      // quote inside a field, so a newline outside quotes is a record's real end, while one
      // inside a long field (a client's statement) may be followed by text that only looks
      // like a record
      if (c === QUOTE && csv) this.quoted = !this.quoted
      else if (c === NEWLINE && !this.quoted) {
        if (this.discarding) this.discarding = false
        else this.take(text.slice(start, i), out)
        start = i + 1
      }
    }
    this.pending = text.slice(start)
    if (this.pending.length > this.maxRecordChars) {
      // a runaway record: drop it and start again after its end
      this.pending = ''
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

// The message parts (quoted names, apply CONTEXT, key DETAIL, SQLSTATE classes) live in
// logmessage.ts; re-exported so callers keep one import.
export {
  type ApplyErrorContext,
  findQuotedNames,
  isConflict,
  isConnectionLoss,
  isTransient,
  parseApplyContext,
  parseKeyDetail,
} from './logmessage.js'
