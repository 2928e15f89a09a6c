// The failure index on real log records (the fixtures), English and German, and on records
// any user can make the server write.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { LogParser, type LogRecord } from '../../src/postgres/logparse.js'
import { FailureIndex } from '../../src/resolver/failures.js'

const dir = path.resolve(import.meta.dirname, '../fixtures/logs')
const records = (file: string) =>
  new LogParser(file.endsWith('.json') ? 'jsonlog' : 'csvlog').feed(
    fs.readFileSync(path.join(dir, file)),
  )

describe.each(['en-17.json', 'en-17.csv', 'de-15.json', 'de-15.csv'])(
  'FailureIndex on %s',
  (file) => {
    it('ties the last failure of the subscription to it by origin and by the disabled line', () => {
      const index = new FailureIndex()
      index.add(records(file), ['a_from_b'])
      const f = index.latestFor('a_from_b', 16399)
      expect(f).toBeDefined()
      // the fixtures end with the missing-table failure (55000) after the conflict and the
      // lost publisher; the latest one wins
      expect(f?.sqlState).toBe('55000')
    })
    it('finds the conflict with its LSN and key when fed up to the conflict only', () => {
      const all = records(file)
      const upto = all.findIndex((r) => r.sqlState === '23505')
      const index = new FailureIndex()
      index.add(all.slice(0, upto + 1), ['a_from_b'])
      const f = index.latestFor('a_from_b', 16399)
      expect(f?.sqlState).toBe('23505')
      expect(f?.finishLsn).toMatch(/^0\/[0-9A-F]+$/)
      expect(f).toMatchObject({ key: 'id', value: '5' })
    })
  },
)

describe('FailureIndex and log lines any user can make the server write (issue 8, item 4)', () => {
  const SUB = 'trktr_sub_1_0'
  const OID = 16400
  const context =
    `processing remote data for replication origin "pg_${OID}" during message type "INSERT" ` +
    'for replication target relation "public.t" in transaction 748, finished at 0/DEADBEEF'
  let line = 0
  const record = (r: Partial<LogRecord> & Pick<LogRecord, 'pid'>): LogRecord => ({
    timestamp: `2026-11-29 05:13:10.${String(line++).padStart(3, '0')} UTC`,
    severity: 'ERROR',
    level: 'ERROR',
    sqlState: '23505',
    message: 'duplicate key value violates unique constraint "reptest_pk"',
    ...r,
  })
  const disabled = (pid: number, backendType: string) =>
    record({
      pid,
      severity: 'LOG',
      level: 'LOG',
      sqlState: '00000',
      message: `subscription "${SUB}" has been disabled because of an error`,
      backendType,
    })
  const APPLY = 'logical replication apply worker'

  it.each(['client backend', 'parallel worker', 'logical replication tablesync worker', undefined])(
    'takes no conflict, lost publisher or "disabled" line from a %s',
    (backendType) => {
      const bt = backendType === undefined ? {} : { backendType }
      const index = new FailureIndex()
      index.add(
        [
          record({ pid: 10, context, ...bt }),
          record({ pid: 11, sqlState: '08006', message: 'lost', ...bt }),
          record({ ...disabled(11, 'client backend'), ...bt }),
          record({ pid: 12, detail: context, hint: context, ...bt }),
          record({ ...disabled(12, 'client backend'), ...bt }),
        ],
        [SUB],
      )
      expect(index.latestFor(SUB, OID)).toBeUndefined()
    },
  )

  it('takes nothing from the fixtures once their backend_type is a client', () => {
    for (const file of ['en-17.json', 'de-15.csv']) {
      const index = new FailureIndex()
      index.add(
        records(file).map((r) => ({ ...r, backendType: 'client backend' })),
        ['a_from_b'],
      )
      expect(index.latestFor('a_from_b', 16399)).toBeUndefined()
    }
  })

  it('a client cannot name the subscription of an apply worker error, nor follow up on it', () => {
    const index = new FailureIndex()
    // an apply worker's error with no context (a lost connection), whose next record is not a
    // "disabled" line; a client then logs that line
    index.add(
      [
        record({ pid: 20, sqlState: '08006', message: 'lost', backendType: APPLY }),
        record({
          pid: 20,
          severity: 'LOG',
          level: 'LOG',
          sqlState: '00000',
          message: 'x',
          backendType: APPLY,
        }),
        disabled(20, APPLY),
        disabled(21, 'client backend'),
      ],
      [SUB],
    )
    expect(index.latestFor(SUB, OID)).toBeUndefined()
  })

  it('a forged conflict logged after a real one does not replace it', () => {
    const index = new FailureIndex()
    const real = context.replace('0/DEADBEEF', '0/1504D68')
    index.add(
      [
        record({ pid: 30, context: real, backendType: APPLY }),
        disabled(30, APPLY),
        record({ pid: 31, context, backendType: 'client backend' }),
        disabled(31, 'client backend'),
      ],
      [SUB],
    )
    expect(index.latestFor(SUB, OID)).toMatchObject({ pid: 30, finishLsn: '0/1504D68' })
  })

  it('reads an apply worker error by the apply line, not by a trigger line before it', () => {
    const index = new FailureIndex()
    const real = context.replace('0/DEADBEEF', '0/1504D68')
    index.add(
      [
        record({
          pid: 40,
          context: `SQL statement "INSERT INTO audit VALUES ('x\n${context}\n')"\nPL/pgSQL function audit() line 3 at EXECUTE\n${real}`,
          backendType: APPLY,
        }),
        disabled(40, APPLY),
      ],
      [SUB],
    )
    expect(index.latestFor(SUB, OID)).toMatchObject({ pid: 40, finishLsn: '0/1504D68' })
  })
})
