// Rows passing through a COPY stream, counted as the chunks go by (a join's progress). Text
// format: one newline per row (a newline inside a value is written \n). Binary format
// (PostgreSQL's "COPY ... WITH (FORMAT binary)"): a 19-byte header and its extension, then per
// row a 16-bit field count (-1 ends the data) and per field a 32-bit length (-1 is NULL)
// followed by that many bytes. Chunks split anywhere, also inside a length.

const HEADER = 19 // signature (11), flags (4), extension length (4)

type Phase =
  | { kind: 'header' }
  | { kind: 'row' }
  | { kind: 'field'; left: number }
  | { kind: 'skip'; bytes: number; left: number }
  | { kind: 'done' }

export class BinaryCopyRows {
  private phase: Phase = { kind: 'header' }
  /** bytes of a header, a count or a length that a chunk boundary split */
  private partial = Buffer.alloc(0)

  /** Feed the next chunk; returns the rows that began in it. */
  push(chunk: Buffer): number {
    let rows = 0
    let at = 0
    while (at < chunk.length) {
      const p = this.phase
      if (p.kind === 'done') return rows
      if (p.kind === 'skip') {
        const n = Math.min(p.bytes, chunk.length - at)
        at += n
        p.bytes -= n
        if (p.bytes === 0)
          this.phase = p.left > 0 ? { kind: 'field', left: p.left } : { kind: 'row' }
        continue
      }
      const want = p.kind === 'header' ? HEADER : p.kind === 'row' ? 2 : 4
      const got = this.take(chunk, at, want)
      at = got.at
      if (!got.bytes) continue
      const b = got.bytes
      if (p.kind === 'header') {
        const ext = b.readUInt32BE(15)
        this.phase = ext > 0 ? { kind: 'skip', bytes: ext, left: 0 } : { kind: 'row' }
      } else if (p.kind === 'row') {
        const fields = b.readInt16BE(0)
        if (fields < 0) {
          this.phase = { kind: 'done' }
        } else {
          rows++
          if (fields > 0) this.phase = { kind: 'field', left: fields }
        }
      } else {
        const len = b.readInt32BE(0)
        const left = p.left - 1
        if (len > 0) this.phase = { kind: 'skip', bytes: len, left }
        else this.phase = left > 0 ? { kind: 'field', left } : { kind: 'row' }
      }
    }
    return rows
  }

  /** `want` bytes from `at` (with what an earlier chunk left), or none yet. */
  private take(chunk: Buffer, at: number, want: number): { bytes?: Buffer; at: number } {
    if (this.partial.length === 0 && chunk.length - at >= want) {
      return { bytes: chunk.subarray(at, at + want), at: at + want }
    }
    const n = Math.min(want - this.partial.length, chunk.length - at)
    this.partial = Buffer.concat([this.partial, chunk.subarray(at, at + n)])
    if (this.partial.length < want) return { at: at + n }
    const bytes = this.partial
    this.partial = Buffer.alloc(0)
    return { bytes, at: at + n }
  }
}

/** Rows in a chunk of text-format COPY data. */
export function textCopyRows(chunk: Buffer): number {
  let n = 0
  for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++
  return n
}
