// The statement kinds cluster DDL runs, read from the leading keywords past comments; anything
// else is a 400 that names what is allowed (PostgreSQL itself refuses a second statement).
import { describe, expect, it } from 'vitest'
import { ddlKind, leadingWords, MAX_DDL_BYTES } from '../../src/postgres/ddl-statement.js'

describe('ddlKind', () => {
  it.each([
    ['ALTER TABLE demo.t ADD COLUMN x int', 'alter-table'],
    ['  alter  table demo.t drop column x;', 'alter-table'],
    ['-- why\nALTER TABLE demo.t ALTER COLUMN x SET DEFAULT 1', 'alter-table'],
    ['/* a /* nested */ comment */ CREATE INDEX i ON demo.t (x)', 'create-index'],
    ['CREATE UNIQUE INDEX i ON demo.t (x)', 'create-index'],
    ['DROP INDEX demo.i', 'drop-index'],
    ['CREATE TABLE demo.n (id int PRIMARY KEY)', 'create-table'],
    ['DROP TABLE demo.n', 'drop-table'],
  ])('%s → %s', (sql, kind) => {
    expect(ddlKind(sql)).toBe(kind)
  })

  it.each([
    [
      'DELETE FROM demo.t',
      /"DELETE FROM demo.t" is not a schema change the cluster runs; allowed: ALTER TABLE/,
    ],
    ['VACUUM demo.t', /"VACUUM demo.t" is not a schema change/],
    ['CREATE INDEX CONCURRENTLY i ON demo.t (x)', /CONCURRENTLY cannot run inside the transaction/],
    ['CREATE UNIQUE INDEX CONCURRENTLY i ON demo.t (x)', /CONCURRENTLY/],
    ['DROP INDEX CONCURRENTLY demo.i', /CONCURRENTLY/],
    ['CREATE TEMP TABLE x (id int)', /a temp table is not replicated/],
    ['CREATE UNLOGGED TABLE x (id int)', /a unlogged table is not replicated/],
    ['ALTER SYSTEM SET work_mem = 1', /"ALTER SYSTEM SET work_mem = 1" is not a schema change/],
    ['GRANT ALL ON demo.t TO x', /not a schema change/],
    ['   ', /the statement is empty/],
    ['-- only a comment', /is not a schema change/],
    ['ALTER TABLE t ADD COLUMN x int\0', /NUL/],
  ])('refuses %j', (sql, why) => {
    expect(() => ddlKind(sql)).toThrow(why)
  })

  it('refuses a statement longer than the limit, and a value that is not a string', () => {
    expect(() => ddlKind(`ALTER TABLE t ADD COLUMN x int -- ${'x'.repeat(MAX_DDL_BYTES)}`)).toThrow(
      /longer than/,
    )
    expect(() => ddlKind(42 as unknown as string)).toThrow(/empty/)
  })

  it('reads keywords only: quoted names and strings stop the scan', () => {
    expect(leadingWords('ALTER TABLE "Weird" ADD', 4)).toEqual(['ALTER', 'TABLE'])
    expect(leadingWords('/* x */ -- y\n drop /**/ table', 4)).toEqual(['DROP', 'TABLE'])
  })
})
