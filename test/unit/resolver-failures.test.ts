// The failure index on real log records (the fixtures), English and German.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { LogParser } from '../../src/postgres/logparse.js'
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
