import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  findQuotedNames,
  isApplyWorkerRecord,
  isConflict,
  isConnectionLoss,
  type LogFormat,
  LogParser,
  type LogRecord,
  normalizeSeverity,
  parseApplyContext,
  parseKeyDetail,
} from '../../src/postgres/logparse.js'

// Real logs of node A, made by scripts/make-log-fixtures.sh (see test/fixtures/logs/README.md)
const fixture = (name: string): Buffer =>
  readFileSync(new URL(`../fixtures/logs/${name}`, import.meta.url))

const FORMAT: Record<string, LogFormat> = { csv: 'csvlog', json: 'jsonlog' }
const formatOf = (name: string): LogFormat => FORMAT[name.split('.').pop() ?? ''] ?? 'csvlog'

function parseWhole(name: string): LogRecord[] {
  return new LogParser(formatOf(name)).feed(fixture(name))
}

function parseInChunks(name: string, cuts: readonly number[]): LogRecord[] {
  const bytes = fixture(name)
  const parser = new LogParser(formatOf(name))
  const out: LogRecord[] = []
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    out.push(...parser.feed(bytes.subarray(from, cut)))
    from = cut
  }
  return out
}

// deterministic, so a failing cut list can be reproduced from the seed
function randomCuts(length: number, seed: number): number[] {
  let s = seed >>> 0
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  const cuts: number[] = []
  for (let at = 1 + Math.floor(next() * 7); at < length; at += 1 + Math.floor(next() * 7)) {
    cuts.push(at)
  }
  return cuts
}

const FILES = ['en-17.csv', 'en-17.json', 'de-15.csv', 'de-15.json']

/** One csvlog record as PostgreSQL 17 writes it (26 columns), from the fields a test sets. */
function csvLine(f: {
  pid: number
  severity: string
  sqlState?: string
  message: string
  context?: string
  statement?: string
  backendType: string
}): string {
  const q = (v: string | undefined) => (v === undefined ? '' : `"${v.replaceAll('"', '""')}"`)
  const cols = Array.from({ length: 26 }, () => '')
  cols[0] = '2026-11-29 05:12:51.687 UTC'
  cols[3] = String(f.pid)
  cols[11] = f.severity
  cols[12] = f.sqlState ?? '00000'
  cols[13] = q(f.message)
  cols[18] = q(f.context)
  cols[19] = q(f.statement)
  cols[23] = q(f.backendType)
  return cols.join(',')
}

function byState(records: LogRecord[], sqlState: string): LogRecord {
  const r = records.find((x) => x.sqlState === sqlState)
  if (r === undefined) throw new Error(`no ${sqlState} record`)
  return r
}

/** the LOG line right after a record of the same process */
function nextOfSamePid(records: LogRecord[], r: LogRecord): LogRecord | undefined {
  return records.slice(records.indexOf(r) + 1).find((x) => x.pid === r.pid)
}

describe('LogParser on the real fixtures', () => {
  for (const name of FILES) {
    it(`${name}: parses all 20 records and skips nothing`, () => {
      const parser = new LogParser(formatOf(name))
      const records = parser.feed(fixture(name))
      expect(records).toHaveLength(20)
      expect(parser.skipped).toBe(0)
    })

    it(`${name}: random small chunks give the same records`, () => {
      const whole = parseWhole(name)
      for (const seed of [1, 2, 3, 42, 2026]) {
        expect(parseInChunks(name, randomCuts(fixture(name).length, seed))).toEqual(whole)
      }
    })

    it(`${name}: one byte at a time gives the same records`, () => {
      const cuts = Array.from({ length: fixture(name).length - 1 }, (_, i) => i + 1)
      expect(parseInChunks(name, cuts)).toEqual(parseWhole(name))
    })
  }

  it('a cut inside a UTF-8 character and inside a multi-line csv record changes nothing', () => {
    const bytes = fixture('de-15.csv')
    const umlaut = bytes.indexOf(Buffer.from('ü'))
    const statementNewline = bytes.indexOf(Buffer.from(',\n  '))
    expect(umlaut).toBeGreaterThan(0)
    expect(statementNewline).toBeGreaterThan(0)
    const cuts = [umlaut + 1, statementNewline + 1, statementNewline + 3].sort((a, b) => a - b)
    expect(parseInChunks('de-15.csv', cuts)).toEqual(parseWhole('de-15.csv'))
  })

  it('csvlog and jsonlog of the same run agree, severity text aside', () => {
    expect(parseWhole('en-17.csv')).toEqual(parseWhole('en-17.json'))
    const csv = parseWhole('de-15.csv')
    const json = parseWhole('de-15.json')
    expect(csv.map(({ severity: _, ...r }) => r)).toEqual(json.map(({ severity: _, ...r }) => r))
  })

  it('German csvlog translates error_severity, jsonlog does not; level is normalised', () => {
    const csvError = byState(parseWhole('de-15.csv'), '23505')
    const jsonError = byState(parseWhole('de-15.json'), '23505')
    expect(csvError.severity).toBe('FEHLER')
    expect(jsonError.severity).toBe('ERROR')
    expect(csvError.level).toBe('ERROR')
    expect(jsonError.level).toBe('ERROR')
    expect(byState(parseWhole('de-15.csv'), '00000').severity).toBe('LOG')
  })

  it('the multi-line statement of a client error is one record', () => {
    for (const name of FILES) {
      const r = byState(parseWhole(name), '22012')
      expect(r.statement).toBe("SELECT 1 / 0 AS x,\n  'zwei' AS y")
      expect(r.backendType).toBe('client backend')
    }
  })
})

describe('the insert-insert conflict (23505)', () => {
  const expected = {
    en: {
      files: ['en-17.csv', 'en-17.json'],
      message: 'duplicate key value violates unique constraint "t_pkey"',
      detail: 'Key (id)=(5) already exists.',
      backendType: 'logical replication apply worker',
      context: { remoteXid: 742, finishLsn: '0/1504D68' },
    },
    de: {
      files: ['de-15.csv', 'de-15.json'],
      message: 'doppelter Schlüsselwert verletzt Unique-Constraint »t_pkey«',
      detail: 'Schlüssel »(id)=(5)« existiert bereits.',
      backendType: 'logical replication worker',
      context: { remoteXid: 726, finishLsn: '0/152D050' },
    },
  }
  for (const e of Object.values(expected)) {
    for (const name of e.files) {
      it(`${name}: record, context, key and the "disabled" line`, () => {
        const records = parseWhole(name)
        const r = byState(records, '23505')
        expect(isConflict(r.sqlState)).toBe(true)
        expect(isConnectionLoss(r.sqlState)).toBe(false)
        expect(r.level).toBe('ERROR')
        expect(r.message).toBe(e.message)
        expect(r.detail).toBe(e.detail)
        expect(r.backendType).toBe(e.backendType)
        expect(parseApplyContext(r.context ?? '')).toEqual({
          origin: 'pg_16399',
          subscriptionOid: 16399,
          messageType: 'INSERT',
          relation: 'public.t',
          ...e.context,
        })
        expect(parseKeyDetail(r.detail ?? '')).toEqual({ key: 'id', value: '5' })
        expect(findQuotedNames(r.message)).toEqual(['t_pkey'])

        const disabled = nextOfSamePid(records, r)
        expect(disabled?.level).toBe('LOG')
        expect(findQuotedNames(disabled?.message ?? '')).toEqual(['a_from_b'])
      })
    }
  }

  it('SKIP logs the same LSN and remote xid in BEGIN and COMMIT contexts', () => {
    const skip = { remoteXid: 742, finishLsn: '0/1504D68' }
    const contexts = parseWhole('en-17.csv')
      .filter((r) => r.sqlState === '00000' && r.context !== undefined)
      .map((r) => parseApplyContext(r.context ?? ''))
    expect(contexts).toEqual([
      { origin: 'pg_16399', subscriptionOid: 16399, messageType: 'BEGIN', ...skip },
      { origin: 'pg_16399', subscriptionOid: 16399, messageType: 'COMMIT', ...skip },
    ])
  })
})

describe('the publisher shutting down (08006)', () => {
  for (const name of FILES) {
    it(`${name}: connection loss, then the subscription is disabled`, () => {
      const records = parseWhole(name)
      const r = byState(records, '08006')
      expect(isConnectionLoss(r.sqlState)).toBe(true)
      expect(isConflict(r.sqlState)).toBe(false)
      expect(r.level).toBe('ERROR')
      expect(r.message.split('\n')).toHaveLength(4)
      expect(r.context).toBeUndefined()
      const disabled = nextOfSamePid(records, r)
      expect(findQuotedNames(disabled?.message ?? '')).toEqual(['a_from_b'])
    })
  }
})

describe('a published table missing on the subscriber (55000)', () => {
  const expected = [
    ['en-17.csv', 743, '0/1504EF0'],
    ['de-15.json', 727, '0/152D1D8'],
  ] as const
  for (const [name, remoteXid, finishLsn] of expected) {
    it(`${name}: relation named in the message, not in the context`, () => {
      const records = parseWhole(name)
      const r = byState(records, '55000')
      expect(isConflict(r.sqlState)).toBe(false)
      expect(isConnectionLoss(r.sqlState)).toBe(false)
      expect(findQuotedNames(r.message)).toEqual(['public.u'])
      expect(parseApplyContext(r.context ?? '')).toEqual({
        origin: 'pg_16399',
        subscriptionOid: 16399,
        messageType: 'INSERT',
        remoteXid,
        finishLsn,
      })
      expect(findQuotedNames(nextOfSamePid(records, r)?.message ?? '')).toEqual(['a_from_b'])
    })
  }
})

describe('garbage input', () => {
  const csv = fixture('en-17.csv')
  const json = fixture('en-17.json')

  it('skips garbage lines between real csv records and counts them', () => {
    const parser = new LogParser('csvlog')
    const garbage = 'garbage\n1,2,3\n\n"a","b"\nx,"y""z",\n\u0000\u00ff\n'
    const records = [
      ...parser.feed(Buffer.from(garbage)),
      ...parser.feed(csv),
      ...parser.feed(Buffer.from(garbage)),
    ]
    expect(records).toEqual(parseWhole('en-17.csv'))
    expect(parser.skipped).toBe(10)
  })

  it('skips garbage lines between real jsonlog records and counts them', () => {
    const parser = new LogParser('jsonlog')
    const garbage = '{not json\n[1,2]\nnull\n"str"\n{"pid":"1"}\n{}\n\u00ff\n'
    const records = [
      ...parser.feed(Buffer.from(garbage)),
      ...parser.feed(json),
      ...parser.feed(Buffer.from([0xff, 0xfe, 0x0a])),
    ]
    expect(records).toEqual(parseWhole('en-17.json'))
    expect(parser.skipped).toBe(8)
  })

  it('drops a csv record past maxRecordChars whole, and the newlines inside its quotes', () => {
    // a client's statement is logged in a quoted field; past the limit the parser must not
    // start again at a newline inside it, where the client may have written a record of its own
    const forged = csvLine({
      pid: 7,
      severity: 'ERROR',
      sqlState: '08006',
      message: 'forged',
      backendType: 'logical replication apply worker',
    })
    const client = csvLine({
      pid: 8,
      severity: 'ERROR',
      sqlState: '22012',
      message: 'division by zero',
      statement: `SELECT 1 / 0 /*${'x'.repeat(100)}\n${forged}\n*/`,
      backendType: 'client backend',
    })
    const after = csvLine({ pid: 9, severity: 'LOG', message: 'after', backendType: 'postmaster' })
    // the forged line alone is a valid record: only the limit could expose it
    expect(new LogParser('csvlog').feed(Buffer.from(`${forged}\n`))).toHaveLength(1)
    expect(new LogParser('csvlog').feed(Buffer.from(`${client}\n`))[0]?.statement).toContain(
      'apply worker',
    )
    const parser = new LogParser('csvlog', { maxRecordChars: 64 })
    const text = `${client}\n${after}\n`
    const records = [
      ...parser.feed(Buffer.from(text.slice(0, 80))),
      ...parser.feed(Buffer.from(text.slice(80))),
    ]
    expect(records.map((r) => r.message)).toEqual(['after'])
    expect(parser.skipped).toBe(1)
  })

  it('after an unbalanced csv quote (never written by PostgreSQL) takes nothing until reset()', () => {
    const parser = new LogParser('csvlog', { maxRecordChars: 64 })
    expect(() => parser.feed(Buffer.from(`"unterminated ${'x'.repeat(100)}\n`))).not.toThrow()
    expect(parser.feed(csv)).toEqual([])
    parser.reset()
    expect(parser.feed(csv)).toEqual(parseWhole('en-17.csv'))
  })

  it('reset() forgets an unfinished record', () => {
    const parser = new LogParser('jsonlog')
    parser.feed(Buffer.from('{"timestamp":"2026'))
    parser.reset()
    expect(parser.feed(json)).toEqual(parseWhole('en-17.json'))
    expect(parser.skipped).toBe(0)
  })
})

describe('isApplyWorkerRecord', () => {
  it('is the apply worker of 17 and the logical replication worker of 15 in the fixtures', () => {
    for (const name of FILES) {
      const records = parseWhole(name)
      const apply = records.filter(isApplyWorkerRecord)
      // the four apply errors and their LOG lines come from apply workers, nothing else does
      expect(apply.filter((r) => r.level === 'ERROR').map((r) => r.sqlState)).toEqual([
        '23505',
        '08006',
        '55000',
      ])
      expect(byState(records, '22012').backendType).toBe('client backend')
      expect(isApplyWorkerRecord(byState(records, '22012'))).toBe(false)
    }
  })

  it.each([
    ['client backend', false],
    ['walsender', false],
    ['background worker', false],
    ['parallel worker', false],
    ['logical replication tablesync worker', false],
    ['logical replication parallel worker', false],
    ['logical replication launcher', false],
    ['Logical replication apply worker', false],
    ['logical replication apply worker ', false],
    [undefined, false],
    ['logical replication apply worker', true],
    ['logical replication worker', true],
  ])('%s: %s', (backendType, expected) => {
    expect(isApplyWorkerRecord(backendType === undefined ? {} : { backendType })).toBe(expected)
  })
})

describe('findQuotedNames', () => {
  it.each([
    ['subscription "a_from_b" has been disabled because of an error', ['a_from_b']],
    ['Subskription »a_from_b« wurde wegen eines Fehlers deaktiviert', ['a_from_b']],
    ['la suscripción «a_from_b» ha sido inhabilitada debido a un error', ['a_from_b']],
    ['la relation cible « public.u » n\u2019existe pas', ['public.u']],
    ["la relation cible « public.u » n'existe pas", ['public.u']],
    ['Subskription „a_from_b“ wurde deaktiviert', ['a_from_b']],
    ["subscription 'a_from_b' has been disabled", ['a_from_b']],
    ['"%s" with "two" tokens', ['%s', 'two']],
    ['nothing quoted here', []],
  ])('%s', (message, names) => {
    expect(findQuotedNames(message)).toEqual(names)
  })
})

// Every translation of the apply worker's four context lines in PostgreSQL 15's message catalogs
// (/usr/share/locale/*/LC_MESSAGES/postgres-15.mo, Debian; fr, ka and zh_CN keep English), and
// English. PostgreSQL 17 has the same lines.
const APPLY_CONTEXT_CATALOG: ReadonlyArray<readonly [string, string]> = [
  ['en', 'processing remote data for replication origin "%s" during message type "%s"'],
  [
    'en',
    'processing remote data for replication origin "%s" during message type "%s" for replication target relation "%s.%s" column "%s" in transaction %u, finished at %X/%X',
  ],
  [
    'en',
    'processing remote data for replication origin "%s" during message type "%s" for replication target relation "%s.%s" in transaction %u, finished at %X/%X',
  ],
  [
    'en',
    'processing remote data for replication origin "%s" during message type "%s" in transaction %u',
  ],
  [
    'en',
    'processing remote data for replication origin "%s" during message type "%s" in transaction %u, finished at %X/%X',
  ],
  ['de', 'Verarbeiten empfangener Daten für Replication-Origin »%s« bei Nachrichtentyp »%s«'],
  [
    'de',
    'Verarbeiten empfangener Daten für Replication-Origin »%s« bei Nachrichtentyp »%s« für Replikationszielrelation »%s.%s« Spalte »%s« in Transaktion %u, beendet bei %X/%X',
  ],
  [
    'de',
    'Verarbeiten empfangener Daten für Replication-Origin »%s« bei Nachrichtentyp »%s« für Replikationszielrelation »%s.%s« in Transaktion %u, beendet bei %X/%X',
  ],
  [
    'de',
    'Verarbeiten empfangener Daten für Replication-Origin »%s« bei Nachrichtentyp »%s« in Transaktion %u',
  ],
  [
    'de',
    'Verarbeiten empfangener Daten für Replication-Origin »%s« bei Nachrichtentyp »%s« in Transaktion %u, beendet bei %X/%X',
  ],
  ['es', 'procesando datos remotos de origen de replicación «%s» durante el mensaje de tipo «%s»'],
  [
    'es',
    'procesando datos remotos de origen de replicación «%s» durante el mensaje de tipo «%s» para la relación de destino «%s.%s» columna «%s» en la transacción %u, concluida en %X/%X',
  ],
  [
    'es',
    'procesando datos remotos de origen de replicación «%s» durante el mensaje de tipo «%s» para la relación de destino «%s.%s» en la transacción %u, concluida en %X/%X',
  ],
  [
    'es',
    'procesando datos remotos de origen de replicación «%s» durante el mensaje de tipo «%s» en la transacción %u',
  ],
  [
    'es',
    'procesando datos remotos de origen de replicación «%s» durante el mensaje de tipo «%s» en la transacción %u, concluida en %X/%X',
  ],
  [
    'it',
    'elaborazione dei dati remoti per l\'origine della replica "%s" durante il tipo di messaggio "%s"',
  ],
  [
    'it',
    'elaborazione dei dati remoti per l\'origine della replica "%s" durante il tipo di messaggio "%s" per la relazione di destinazione della replica "%s.%s" colonna "%s" nella transazione %u, terminata alle %X/%X',
  ],
  [
    'it',
    'elaborazione dei dati remoti per l\'origine della replica "%s" durante il tipo di messaggio "%s" per la relazione di destinazione della replica "%s.%s" nella transazione %u, terminata alle %X/%X',
  ],
  [
    'it',
    'elaborazione dei dati remoti per l\'origine della replica "%s" durante il tipo di messaggio "%s" nella transazione %u',
  ],
  [
    'it',
    'elaborazione dei dati remoti per l\'origine della replica "%s" durante il tipo di messaggio "%s" nella transazione %u, terminata alle %X/%X',
  ],
  ['ja', 'メッセージタイプ "%2$s"でレプリケーション基点"%1$s"のリモートからのデータを処理中'],
  [
    'ja',
    '%7$X/%8$Xで終了したトランザクション%6$u中、レプリケーション先リレーション"%3$s.%4$s"、列"%5$s"に対するメッセージタイプ"%2$s"でレプリケーション基点"%1$s"のリモートからのデータを処理中',
  ],
  [
    'ja',
    '%6$X/%7$Xで終了したトランザクション%5$u中、レプリケーション先リレーション"%3$s.%4$s"に対するメッセージタイプ"%2$s"でレプリケーション基点"%1$s"のリモートからのデータを処理中',
  ],
  [
    'ja',
    'トランザクション%3$u中、メッセージタイプ"%2$s"でレプリケーション基点"%1$s"のリモートからのデータを処理中',
  ],
  [
    'ja',
    '%4$X/%5$Xで終了したトランザクション%3$u中、メッセージタイプ"%2$s"でレプリケーション基点"%1$s"のリモートからのデータを処理中',
  ],
  ['ko', '"%s" 복제 오리진용 원격 데이터를 처리합니다. 해당 메시지 유형: "%s"'],
  [
    'ko',
    '"%s" 복제 오리진용 원격 데이터를 처리합니다. 해당 메시지 유형: "%s", 해당 복제 대상 릴레이션: "%s.%s", 해당 칼럼 "%s", 해당 트랜잭션: %u, 마침 위치: %X/%X',
  ],
  [
    'ko',
    '"%s" 복제 오리진용 원격 데이터를 처리합니다. 해당 메시지 유형: "%s", 해당 복제 대상 릴레이션: "%s.%s", 해당 트랜잭션: %u, 마침 위치: %X/%X',
  ],
  ['ko', '"%s" 복제 오리진용 원격 데이터를 처리합니다. 해당 메시지 유형: "%s", 해당 트랜잭션: %u'],
  [
    'ko',
    '"%s" 복제 오리진용 원격 데이터를 처리합니다. 해당 메시지 유형: "%s", 해당 트랜잭션: %u, 마침 위치: %X/%X',
  ],
  ['ru', 'обработка внешних данных для источника репликации "%s" в контексте сообщения типа "%s"'],
  [
    'ru',
    'обработка внешних данных для источника репликации "%s" в контексте сообщения типа "%s" для целевого отношения репликации "%s.%s", столбца "%s", в транзакции %u, конечная позиция %X/%X',
  ],
  [
    'ru',
    'обработка внешних данных для источника репликации "%s" в контексте сообщения типа "%s" для целевого отношения репликации "%s.%s" в транзакции %u, конечная позиция %X/%X',
  ],
  [
    'ru',
    'обработка внешних данных из источника репликации "%s" в контексте сообщения типа "%s" в транзакции %u',
  ],
  [
    'ru',
    'обработка внешних данных для источника репликации "%s" в контексте сообщения типа "%s" в транзакции %u, конечная позиция %X/%X',
  ],
  ['sv', 'processar fjärrdata för replikeringskälla "%s" vid meddelandetyp "%s"'],
  [
    'sv',
    'processande av fjärrdata för replikeringskälla "%s" vid meddelandetyp "%s" för replikeringsmålrelation "%s.%s" kolumn "%s" i transaktion %u blev klart vid %X/%X',
  ],
  [
    'sv',
    'processande av fjärrdata för replikeringskälla "%s" vid meddelandetyp "%s" för replikeringsmålrelation "%s.%s" i transaktion %u blev klart vid %X/%X',
  ],
  ['sv', 'processar fjärrdata för replikeringskälla "%s" vid meddelandetyp "%s" i transaktion %u'],
  [
    'sv',
    'processande av fjärrdata för replikeringskälla "%s" vid meddelandetyp "%s" i transaktion %u blev klar vid %X/%X',
  ],
  ['uk', 'обробка віддалених даних для джерела реплікації "%s" під час повідомлення типу "%s"'],
  [
    'uk',
    'обробку віддалених даних для джерела реплікації "%s" під час повідомлення типу "%s" для цільового відношення реплікації "%s.%s" стовпчик "%s" у транзакції %u завершено о %X/%X',
  ],
  [
    'uk',
    'обробку віддалених даних для джерела реплікації "%s" під час повідомлення типу "%s" для цільового відношення реплікації "%s.%s" в транзакції %u завершено о %X/%X',
  ],
  [
    'uk',
    'обробка віддалених даних для джерела реплікації "%s" під час повідомлення типу "%s" у транзакції %u',
  ],
  [
    'uk',
    'обробку віддалених даних для джерела реплікації "%s" під час повідомлення типу "%s" у транзакції %u завершено о %X/%X',
  ],
]

/** printf as PostgreSQL's: %s, %u, %X in order, or %n$s when the translation reorders them */
function fillContext(template: string): string {
  const values = {
    s: ['pg_16399', 'INSERT', 'public', 't', 'v'],
    u: ['742'],
    X: ['0', '1504D68'],
  }
  const convs = [...template.matchAll(/%(?:(\d+)\$)?([suX])/g)]
  const order = convs
    .map((m, i) => ({
      pos: m[1] === undefined ? i + 1 : Number(m[1]),
      kind: m[2] as 's' | 'u' | 'X',
    }))
    .sort((a, b) => a.pos - b.pos)
  const used = { s: 0, u: 0, X: 0 }
  const byPos = new Map(order.map((c) => [c.pos, values[c.kind][used[c.kind]++] ?? '?']))
  let i = 0
  return template.replace(/%(?:(\d+)\$)?([suX])/g, (_, pos: string | undefined) => {
    i++
    return byPos.get(pos === undefined ? i : Number(pos)) ?? '?'
  })
}

describe('parseApplyContext', () => {
  // word orders and quotes from PostgreSQL 15's message catalogs, filled in by hand
  it('Japanese puts the LSN first and the origin last', () => {
    const ja =
      '0/1504D68で終了したトランザクション742中、レプリケーション先リレーション"public.t"に対する' +
      'メッセージタイプ"INSERT"でレプリケーション基点"pg_16399"のリモートからのデータを処理中'
    expect(parseApplyContext(ja)).toEqual({
      origin: 'pg_16399',
      subscriptionOid: 16399,
      messageType: 'INSERT',
      relation: 'public.t',
      remoteXid: 742,
      finishLsn: '0/1504D68',
    })
  })

  it('a trigger context before the apply line; a column after the relation', () => {
    const context =
      'PL/pgSQL function reject() line 3 at RAISE\n' +
      'processing remote data for replication origin "pg_16399" during message type "UPDATE" ' +
      'for replication target relation "my.schema.t" column "x.y" in transaction 9, finished at ' +
      'A/FF00'
    expect(parseApplyContext(context)).toEqual({
      origin: 'pg_16399',
      subscriptionOid: 16399,
      messageType: 'UPDATE',
      relation: 'my.schema.t',
      remoteXid: 9,
      finishLsn: 'A/FF00',
    })
  })

  it('a tablesync origin and a message without transaction', () => {
    expect(
      parseApplyContext(
        'processing remote data for replication origin "pg_16399_16384" during message type ' +
          '"STREAM START"',
      ),
    ).toEqual({ origin: 'pg_16399_16384', subscriptionOid: 16399, messageType: 'STREAM START' })
  })

  it.each(APPLY_CONTEXT_CATALOG)('reads the %s line %s', (_, template) => {
    const expected: Record<string, unknown> = {
      origin: 'pg_16399',
      subscriptionOid: 16399,
      messageType: 'INSERT',
    }
    if (template.includes('.%')) expected.relation = 'public.t'
    if (/%(\d+\$)?u/.test(template)) expected.remoteXid = 742
    if (/%(\d+\$)?X/.test(template)) expected.finishLsn = '0/1504D68'
    expect(parseApplyContext(fillContext(template))).toEqual(expected)
    // and as the last line after a subscriber trigger's lines
    expect(
      parseApplyContext(`PL/pgSQL function f() line 3 at RAISE\n${fillContext(template)}`),
    ).toEqual(expected)
  })

  describe('refuses text that only contains an apply context (issue 8, item 4)', () => {
    const real =
      'processing remote data for replication origin "pg_16399" during message type "INSERT" ' +
      'for replication target relation "public.t" in transaction 748, finished at 0/DEADBEEF'
    it.each([
      ['a COPY line echoing a value', `COPY t, line 1: "${real}"`],
      ['a COPY line with the quotes balanced', 'COPY t, line 1: "pg_16399" "INSERT" "a.b" 7 0/1"'],
      [
        'a COPY line with a value that closes the quotes',
        'COPY t, line 1: "x" "pg_16399" "INSERT" ""',
      ],
      [
        'a COPY line ordered the Japanese way',
        'COPY 0/DEADBEEF, line 1: "a.b" "INSERT" "pg_16399"',
      ],
      ['a COPY line naming a column', `COPY t, line 1, column v: "${real}"`],
      ['an SQL statement on one line', `SQL statement "SELECT '${real}'"`],
      ['a statement text after it', `${real} /* 0/1 */`],
      ['a second number after it', `${real}, line 5`],
      ['a word after the LSN', `${real} ok`],
      ['a number before it', `5 ${real}`],
      ['a number between the tokens', real.replace('during', 'during 5')],
      ['a stray quote', `${real} "`],
      ['a message type that is not one', real.replace('"INSERT"', '"insert me"')],
      ['a relation without a schema', real.replace('public.t', 't')],
      ['five tokens', `${real.replace(' in transaction', ' column "c" "d" in transaction')}`],
    ])('%s', (_, line) => {
      expect(parseApplyContext(line)).toBeUndefined()
    })

    it('reads only the last line naming an origin, never one before it', () => {
      // the one line that names an origin in a COPY line whose value is refused
      const copy = 'COPY t, line 1: "x" "pg_16399" "INSERT" ""'
      expect(parseApplyContext(`${real}\n${copy}`)).toBeUndefined()
      const forged = real.replace('0/DEADBEEF', '0/BAD')
      expect(parseApplyContext(`${forged}\n"\n${real}`)?.finishLsn).toBe('0/DEADBEEF')
      expect(parseApplyContext(`SQL statement "x\n${forged}\n"\nCOPY t, line 1: "pg_1" x`)).toBe(
        undefined,
      )
    })
  })

  it('is undefined when no replication origin is named', () => {
    expect(parseApplyContext('SQL statement "SELECT 1"\nPL/pgSQL function f() line 2')).toBe(
      undefined,
    )
    expect(parseApplyContext('')).toBeUndefined()
  })
})

describe('parseKeyDetail', () => {
  it.each([
    ['Key (id)=(5) already exists.', 'id', '5'],
    ['Schlüssel »(id)=(5)« existiert bereits.', 'id', '5'],
    ['Key (a, b)=(1, x) already exists.', 'a, b', '1, x'],
    ['Schlüssel »(a, b)=(1, x)« existiert bereits.', 'a, b', '1, x'],
    ['La clé « (id)=(5) » existe déjà.', 'id', '5'],
    ['Ключ "(id)=(5)" уже существует.', 'id', '5'],
    ['キー (id)=(5) はすでに存在します。', 'id', '5'],
    ['Key (lower(email))=(a@b.c) already exists.', 'lower(email)', 'a@b.c'],
    ['Key (v)=(a) b)) already exists.', 'v', 'a) b)'],
    ['Key ("Odd Col")=() already exists.', '"Odd Col"', ''],
    ['Key (c)=([1,2)) conflicts with existing key (c)=([0,3)).', 'c', '[1,2)'],
  ])('%s', (detail, key, value) => {
    expect(parseKeyDetail(detail)).toEqual({ key, value })
  })

  it('is undefined without a (key)=(value) pair', () => {
    expect(parseKeyDetail('Failing row contains (5, null).')).toBeUndefined()
    expect(parseKeyDetail('')).toBeUndefined()
  })
})

describe('severity and SQLSTATE classes', () => {
  it.each([
    ['ERROR', '23505', 'ERROR'],
    ['FEHLER', '23505', 'ERROR'],
    ['WARNUNG', '01000', 'WARNING'],
    ['HINWEIS', '00000', 'NOTICE'],
    ['PANIK', 'XX000', 'PANIC'],
    ['FATAL', '57P01', 'FATAL'],
    ['ОШИБКА', '42P01', 'ERROR'],
    ['LOG', '00000', 'LOG'],
    ['UNBEKANNT', '08006', 'ERROR'],
    ['UNBEKANNT', '00000', 'LOG'],
    ['UNBEKANNT', '01000', 'WARNING'],
  ] as const)('%s with %s is %s', (severity, sqlState, level) => {
    expect(normalizeSeverity(severity, sqlState)).toBe(level)
  })

  it('connection loss: class 08 and 57P01..57P05', () => {
    for (const s of ['08000', '08003', '08006', '08P01', '57P01', '57P02', '57P03', '57P05']) {
      expect(isConnectionLoss(s), s).toBe(true)
    }
    for (const s of ['57014', '23505', '00000', '55000', '53300']) {
      expect(isConnectionLoss(s), s).toBe(false)
    }
  })

  it('conflict: class 23 only', () => {
    expect(['23505', '23P01', '23503', '23514'].every(isConflict)).toBe(true)
    expect(['22012', '55000', '08006', '42P01'].some(isConflict)).toBe(false)
  })
})
