// Reads the server log incrementally through SQL (pg_current_logfile + pg_read_binary_file),
// so it works when PostgreSQL runs on another host and needs no file_fdw. It remembers the
// file and the byte offset; a rotation finishes the old file before starting the new one.
import type { Db } from './db.js'
import { type LogFormat, LogParser, type LogRecord } from './logparse.js'

const CHUNK_BYTES = 1 << 20
const MAX_CHUNKS_PER_POLL = 64

export class ServerLogReader {
  private readonly db: Db
  private format: LogFormat | undefined
  private parser: LogParser | undefined
  private file: string | undefined
  private offset = 0

  constructor(db: Db) {
    this.db = db
  }

  /** Where the reader stands, for status and tests. */
  get position(): { file?: string; offset: number; format?: LogFormat } {
    return {
      offset: this.offset,
      ...(this.file === undefined ? {} : { file: this.file }),
      ...(this.format === undefined ? {} : { format: this.format }),
    }
  }

  /** New complete records since the last poll. */
  async poll(): Promise<LogRecord[]> {
    if (this.format !== undefined && this.file !== undefined) {
      // the usual poll, one round trip: the current file, and the next chunk if it is ours
      const [r] = await this.db.query<{ f: string | null; b: Buffer | null }>(
        `SELECT f, CASE WHEN f = $2 THEN pg_read_binary_file(f, $3, $4) END AS b
           FROM pg_current_logfile($1) AS f`,
        [this.format, this.file, this.offset, CHUNK_BYTES],
      )
      if (r?.f === this.file && r.b) {
        const out = this.take(r.b)
        if (r.b.length === CHUNK_BYTES) out.push(...(await this.drain(this.file)))
        return out
      }
    }
    const current = await this.currentFile()
    if (current === undefined) return []
    const out: LogRecord[] = []
    if (this.file !== undefined && this.file !== current) {
      // rotated: read what the old file still had, then start the new one from its beginning
      out.push(...(await this.drain(this.file)))
      this.parser?.reset()
      this.offset = 0
    }
    this.file = current
    out.push(...(await this.drain(current)))
    return out
  }

  private async currentFile(): Promise<string | undefined> {
    if (this.format === undefined) {
      for (const f of ['jsonlog', 'csvlog'] as const) {
        const [r] = await this.db.query<{ f: string | null }>(
          `SELECT pg_current_logfile($1) AS f`,
          [f],
        )
        if (r?.f) {
          this.format = f
          this.parser = new LogParser(f)
          return r.f
        }
      }
      return undefined
    }
    const [r] = await this.db.query<{ f: string | null }>(`SELECT pg_current_logfile($1) AS f`, [
      this.format,
    ])
    return r?.f ?? undefined
  }

  private async drain(file: string): Promise<LogRecord[]> {
    const out: LogRecord[] = []
    for (let i = 0; i < MAX_CHUNKS_PER_POLL; i++) {
      let chunk: Buffer
      try {
        const [r] = await this.db.query<{ b: Buffer }>(
          `SELECT pg_read_binary_file($1, $2, $3) AS b`,
          [file, this.offset, CHUNK_BYTES],
        )
        chunk = r?.b ?? Buffer.alloc(0)
      } catch (err) {
        // a rotated file may be gone already; anything else is the caller's to report
        if ((err as { sqlState?: string }).sqlState === '58P01') return out
        throw err
      }
      if (chunk.length === 0) break
      out.push(...this.take(chunk))
      if (chunk.length < CHUNK_BYTES) break
    }
    return out
  }

  private take(chunk: Buffer): LogRecord[] {
    this.offset += chunk.length
    return (this.parser as LogParser).feed(chunk)
  }
}
