// The row counter of a join's copy (src/postgres/copy-rows.ts): binary COPY data as PostgreSQL
// writes it, split into chunks anywhere, also inside a header, a field count or a length.
import { describe, expect, it } from 'vitest'
import { BinaryCopyRows, textCopyRows } from '../../src/postgres/copy-rows.js'

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

function int16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeInt16BE(n)
  return b
}
function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

/** A binary COPY stream of rows (null = SQL NULL), with an optional header extension. */
function stream(rows: Array<Array<Buffer | null>>, extension = Buffer.alloc(0)): Buffer {
  const parts = [SIGNATURE, int32(0), int32(extension.length), extension]
  for (const r of rows) {
    parts.push(int16(r.length))
    for (const f of r) parts.push(...(f === null ? [int32(-1)] : [int32(f.length), f]))
  }
  parts.push(int16(-1))
  return Buffer.concat(parts)
}

function countIn(data: Buffer, cuts: number[]): number {
  const c = new BinaryCopyRows()
  let rows = 0
  let from = 0
  for (const to of [...cuts, data.length]) {
    rows += c.push(data.subarray(from, to))
    from = to
  }
  return rows
}

const ROWS: Array<Array<Buffer | null>> = [
  [Buffer.from([0, 0, 0, 1]), Buffer.from('one'), null],
  [Buffer.from([0, 0, 0, 2]), Buffer.alloc(0), Buffer.alloc(3000, 7)],
  [],
  // field data that looks like a count of -1 and like lengths
  [Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0, 2, 0, 0, 0, 4])],
]

describe('rows of a binary COPY stream', () => {
  it('counts every row, in one chunk', () => {
    expect(countIn(stream(ROWS), [])).toBe(4)
    expect(countIn(stream([]), [])).toBe(0)
  })

  it('counts every row whatever the chunks: split at every byte, and at random', () => {
    const data = stream(ROWS, Buffer.from('an extension'))
    const everyByte = Array.from({ length: data.length - 1 }, (_, i) => i + 1)
    expect(countIn(data, everyByte)).toBe(4)
    for (let k = 0; k < 200; k++) {
      const cuts = [
        ...new Set(Array.from({ length: 5 }, () => Math.floor(Math.random() * data.length))),
      ].sort((a, b) => a - b)
      expect(countIn(data, cuts), `cuts ${cuts.join(',')}`).toBe(4)
    }
  })

  it('stops at the end marker (nothing after it is a row)', () => {
    const data = Buffer.concat([stream(ROWS), int16(1), int32(0)])
    expect(countIn(data, [])).toBe(4)
  })

  it('text format: one newline per row', () => {
    expect(textCopyRows(Buffer.from('1\ta\\nb\n2\tc\n'))).toBe(2)
  })
})
