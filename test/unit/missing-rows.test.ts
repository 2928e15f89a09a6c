// update_missing / delete_missing from the apply worker's own DEBUG lines (missing-rows.ts):
// lines as PostgreSQL 17 wrote them on this machine (jsonlog), and look-alikes that must not
// count.
import { describe, expect, it } from 'vitest'
import { LogParser } from '../../src/postgres/logparse.js'
import { parseMissingRow } from '../../src/postgres/missing-rows.js'

const CONTEXT = (type: string, xid: number, lsn: string) =>
  `processing remote data for replication origin \\"pg_16392\\" during message type \\"${type}\\" for replication target relation \\"public.t\\" in transaction ${xid}, finished at ${lsn}`

function line(o: { severity?: string; message: string; context?: string; backend?: string }) {
  return `{"timestamp":"2026-12-03 15:46:47.886 UTC","pid":18349,"session_id":"6b118ee4.47ad","line_num":4,"session_start":"2026-12-03 15:46:44 UTC","vxid":"108/6","txid":0,"error_severity":"${o.severity ?? 'DEBUG'}","message":"${o.message}"${o.context === undefined ? '' : `,"context":"${o.context}"`},"backend_type":"${o.backend ?? 'logical replication apply worker'}","query_id":0}\n`
}

const UPDATED =
  'logical replication did not find row to be updated in replication target relation \\"t\\"'
const DELETED =
  'logical replication did not find row to be deleted in replication target relation \\"t\\"'

function parse(text: string) {
  return new LogParser('jsonlog').feed(Buffer.from(text)).map(parseMissingRow)
}

describe('parseMissingRow', () => {
  it('reads a skipped UPDATE and a skipped DELETE with their transaction', () => {
    const [u, d] = parse(
      line({ message: UPDATED, context: CONTEXT('UPDATE', 743, '0/14DEA20') }) +
        line({ message: DELETED, context: CONTEXT('DELETE', 744, '0/14DEA90') }),
    )
    expect(u).toEqual({
      kind: 'update_missing',
      at: '2026-12-03 15:46:47.886 UTC',
      relation: 'public.t',
      origin: 'pg_16392',
      finishLsn: '0/14DEA20',
      remoteXid: 743,
    })
    expect(d?.kind).toBe('delete_missing')
    expect(d?.finishLsn).toBe('0/14DEA90')
  })

  it('takes nothing another process, another level or a mismatched context wrote', () => {
    const ctx = CONTEXT('UPDATE', 743, '0/14DEA20')
    const out = parse(
      // a client session can log any text: not an apply worker
      line({ message: UPDATED, context: ctx, backend: 'client backend' }) +
        // the apply worker's line, but not at DEBUG (a RAISE inside a replica trigger)
        line({ message: UPDATED, context: ctx, severity: 'WARNING' }) +
        // no apply context
        line({ message: UPDATED }) +
        // the message says updated, the context a DELETE
        line({ message: UPDATED, context: CONTEXT('DELETE', 743, '0/14DEA20') }) +
        // another DEBUG line of the apply worker
        line({
          message: 'logical replication apply worker for subscription started',
          context: ctx,
        }),
    )
    expect(out).toEqual([undefined, undefined, undefined, undefined, undefined])
  })
})
