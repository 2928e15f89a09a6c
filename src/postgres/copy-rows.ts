// Rows passing through a COPY stream, counted as the chunks go by (a join's progress). Text
// format: one newline per row (a newline inside a value is written \n). Binary format
// (PostgreSQL's "COPY ... WITH (FORMAT binary)"): a 19-byte header and its extension, then per
// row a 16-bit field count (-1 ends the data) and per field a 32-bit length (-1 is NULL)
// followed by that many bytes. Chunks split anywhere, also inside a length.

const HEADER = 19 // signature (11), flags (4), extension length (4)

// what the next bytes are (numbers, not objects: this runs once per field of a million rows)
const AT_HEADER = 0
const AT_ROW = 1
const AT_FIELD = 2
const AT_END = 3

export class BinaryCopyRows {
  private phase = AT_HEADER
  /** bytes of data (a field's value, the header's extension) still to pass over */
  private skip = 0
  /** fields of the current row still to come */
  private fields = 0
  /** bytes of a header, a count or a length that a chunk boundary split */
  private partial = Buffer.alloc(0)

  /** Feed the next chunk; returns the rows that began in it. */
  push(chunk: Buffer): number {
    let rows = 0
    let at = 0
    const end = chunk.length
    while (at < end && this.phase !== AT_END) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - at)
        at += n
        this.skip -= n
        continue
      }
      const want = this.phase === AT_HEADER ? HEADER : this.phase === AT_ROW ? 2 : 4
      let b: Buffer = chunk
      let from = at
      if (this.partial.length === 0 && end - at >= want) {
        at += want
      } else {
        const n = Math.min(want - this.partial.length, end - at)
        this.partial = Buffer.concat([this.partial, chunk.subarray(at, at + n)])
        at += n
        if (this.partial.length < want) continue
        b = this.partial
        from = 0
        this.partial = Buffer.alloc(0)
      }
      if (this.phase === AT_HEADER) {
        this.skip = b.readUInt32BE(from + 15)
        this.phase = AT_ROW
      } else if (this.phase === AT_ROW) {
        const fields = b.readInt16BE(from)
        if (fields < 0) {
          this.phase = AT_END
        } else {
          rows++
          this.fields = fields
          if (fields > 0) this.phase = AT_FIELD
        }
      } else {
        const len = b.readInt32BE(from)
        if (len > 0) this.skip = len
        if (--this.fields === 0) this.phase = AT_ROW
      }
    }
    return rows
  }
}

/** Rows in a chunk of text-format COPY data. */
export function textCopyRows(chunk: Buffer): number {
  let n = 0
  for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++
  return n
}
