// The table names the ledger stores (regclass text) read back as the arbiter writes them
// elsewhere: the check after conflicts looks them up among the replicated tables.
import { describe, expect, it } from 'vitest'
import { formatStored } from '../../src/postgres/lww-ledger.js'

describe('a ledger relation, as the arbiter names tables', () => {
  it('keeps a qualified name, adds public to a table of the search path, quotes as needed', () => {
    expect(formatStored('demo.t')).toBe('demo.t')
    expect(formatStored('t')).toBe('public.t')
    expect(formatStored('"Foo"')).toBe('public."Foo"')
    expect(formatStored('"a.b"')).toBe('public."a.b"')
    expect(formatStored('demo."Mixed Case"')).toBe('demo."Mixed Case"')
    expect(formatStored('"we""ird".x')).toBe('"we""ird".x')
    // what does not parse is left as it is
    expect(formatStored('a.b.c')).toBe('a.b.c')
  })
})
