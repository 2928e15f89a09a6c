import { describe, expect, it } from 'vitest'
import {
  checkLsn,
  formatRelation,
  parseRelationName,
  qualified,
  quoteLiteral,
} from '../../src/postgres/ident.js'

describe('parseRelationName', () => {
  it('folds unquoted names to lower case like PostgreSQL', () => {
    expect(parseRelationName('MultiMaster.RepTest')).toEqual({
      schema: 'multimaster',
      table: 'reptest',
    })
  })
  it('keeps quoted names as written, with doubled quotes', () => {
    expect(parseRelationName('"My Schema"."a""b.c"')).toEqual({
      schema: 'My Schema',
      table: 'a"b.c',
    })
  })
  it.each([
    'reptest',
    'a.b.c',
    'a.',
    '.b',
    'a.b;drop table x',
    'a.b c',
    '"a.b',
    "a.'b'",
    `a.${'x'.repeat(64)}`,
    'a."b\0"',
    '',
  ])('refuses %j', (name) => {
    expect(() => parseRelationName(name)).toThrow(/malformed table name/)
  })
  it('formats for display and for SQL', () => {
    const rel = parseRelationName('"My Schema".t')
    expect(formatRelation(rel)).toBe('"My Schema".t')
    expect(qualified(rel)).toBe('"My Schema"."t"')
  })
})

describe('quoteLiteral and checkLsn', () => {
  it('doubles quotes and escapes backslashes', () => {
    expect(quoteLiteral("it's")).toBe("'it''s'")
    expect(quoteLiteral('a\\b')).toBe(" E'a\\\\b'")
  })
  it('accepts only LSNs', () => {
    expect(checkLsn('0/18fd018')).toBe('0/18FD018')
    expect(() => checkLsn("0/1'; DROP")).toThrow()
  })
})
